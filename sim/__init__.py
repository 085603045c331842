"""The demo simulator (``yitu simulate``): keeps the demo alive by playing the grid workers, the
dispatchers and the van crews against a running yitu server, through its HTTP API only.

* sim/plan.py: the reports and the decisions taken on each, a pure function of the seed;
* sim/roads.py: the vans' routes on the road network (pgRouting, read-only);
* sim/client.py: the server as a phone or a terminal sees it (retries, outages, tokens);
* sim/loop.py: the clock, the simulated actors and the loop that runs them.

It imports only services/ and geodata/ (an import-linter contract), and only cli/ imports it.
"""

MAX_RATE_PER_HOUR = 3600.0  # per simulated hour: one a second is already a flood for one banner
MAX_SPEEDUP = 1000.0
