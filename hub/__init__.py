"""The hub: an asynchronous, message-driven integration hub.

Where a message enters: ``connectors/`` (one package per protocol). Which topic it goes to:
``hub/topics.py``. What moves it afterwards: ``flows/`` (Faust agents) and the delivery agents.
"""

__version__ = "0.1.0"
