"""The background daemon's control-plane parts (control threads only).

- ``config``: the daemon config (defaults, YAML file, flags) and where each
  value came from; ``last_scene``: the last scene played, remembered;
- ``xdg_dirs``: where config, state and runtime files live;
- ``instance_lock``: one daemon per user;
- ``sd_notify``: readiness, status and watchdog messages to systemd;
- ``systemd_unit``: the systemd user unit, and installing it;
- ``logs``: logging to stderr, with journal priorities under systemd;
- ``output_supervisor``: keeps an engine playing through device loss;
  ``portaudio_instance``: a fresh PortAudio after a JACK server died.
"""
