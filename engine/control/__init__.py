"""Control plane: everything that reaches the engine from outside (control threads,
never the audio thread).

- ``osc_wire``: the OSC 1.0/1.1 codec (strict, bounded datagram parser, encoders,
  NTP timetags, SLIP framing for TCP);
- ``osc_pattern``: OSC address patterns matched at bounded cost;
- ``osc_server``: the UDP and TCP/SLIP server with handler registration, rate
  limits and counters (where OSC enters);
- ``osc_aliases``: incoming addresses mapped onto named inputs with scaling;
- ``osc_api``: the documented address space (docs/osc.md) bound to a scene player;
- ``frame_clock``: OSC timetags to engine frames, anchored to the audio callbacks;
- ``osc_heart``: heart-rate bridge presets feeding a tracker and scene inputs;
- ``osc_subscriptions``: periodic status to subscribers;
- ``status``: status snapshots (scene, state, inputs, levels, CPU, underflows);
- ``osc_surface``: all of the above built in one call (play and the daemon).
"""
