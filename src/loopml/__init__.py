"""loopml: the machine-learning lifecycle in one pip install, with the loop closed."""

__version__ = "0.1.0"
