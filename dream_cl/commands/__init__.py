"""The command line's commands, one module each: typer options turned into a request of
:mod:`dream_cl.jobs`, and the result printed. ``cli.py`` wires them into the app."""
