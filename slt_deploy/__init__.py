"""slt-deploy: spiking lottery tickets from snnTorch to neuromorphic hardware.

The pipeline, one module per stage:  data -> models -> search -> ticket -> export -> compile -> simulate ->
cost -> report. Stages talk through the ticket artifact (:mod:`slt_deploy.ticket`) and small typed objects.
Lava is imported only by the stages that need it.
"""

from .threads import prepare_environment as _prepare_environment

# before anything imports torch or numpy: their OpenMP runtimes read the wait policy once, at start
# (slt_deploy/threads.py says why a waiting thread must sleep, not spin)
_prepare_environment()

__version__ = "0.1.0"
