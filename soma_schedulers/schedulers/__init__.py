"""The built-in backends, one module each (``<type>_scheduler.py``)."""
