"""Local services for development and CI: start, stop and inspect them (``landmarks dev up|down|status``).

One module per service (postgres, redis, seaweed) plus a declarative table of app processes (apps); processes we
start are recorded in a PID registry in the state folder so ``down`` stops exactly what ``up`` started.
"""
