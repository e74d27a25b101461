"""The edgeml distribution: one namespace for everything the wheel installs.

The checkout keeps its layers as top-level folders (`app/`, `agents/`, `models/`, `topics/`,
`sim/`, `infra/`, `training/`); `edgeml/<name>` is a symlink to each, so the code imports
`edgeml.models...` in the checkout exactly as it does after `pip install` and nothing of ours
lands in site-packages under a generic name like `app` or `models` (issue #10, item 6).
"""
