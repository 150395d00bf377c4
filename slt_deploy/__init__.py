"""slt-deploy: spiking lottery tickets from snnTorch to neuromorphic hardware.

The pipeline, one module per stage:  data -> models -> search -> ticket -> export -> compile -> simulate ->
cost -> report. Stages talk through the ticket artifact (:mod:`slt_deploy.ticket`) and small typed objects.
Lava is imported only by the stages that need it.
"""

__version__ = "0.1.0"
