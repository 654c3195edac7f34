"""The schedule layer: what the schedules file says (definitions.py: parsing, validation, saving)
and what fires it (runner.py: the Scheduler, one leader per store, which knows an action only by
the handler registered for it: "check" by the drift service, "run" and "jarvis" by whoever
composes the app)."""
