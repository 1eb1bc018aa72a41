"""tfanomaly: find anomalous galaxies in imaging surveys with a WGAN-GP (Storey-Fisher et al. 2021).

The stages live in :mod:`tfanomaly.pipelines`, the networks in :mod:`tfanomaly.models`, the CLI in
:mod:`tfanomaly.cli`.
"""

__version__ = "0.1.0"
