"""The jupyter_server side: the extension app, its handlers, turns on the server, RTC and server kernels.

Nothing outside this package imports jupyter_server or tornado (tests/test_layout.py keeps that rule).
"""
