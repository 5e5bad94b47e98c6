"""The simulated operations, one module per section of ``nova.releases.Behaviour``.

Each module holds one mixin of ``sim.life.Life`` (builds, generic operations,
cold moves, live migrations, evacuations, shelve, volumes, deletes and
archiving); its methods use the instance state and helpers ``Life`` declares
and reach each other through ``self``.  How often each operation and outcome
happens comes from ``self.rates`` (``SimulationOptions.rates``).
"""
