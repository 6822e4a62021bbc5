"""The weight-sharing supernet of a space: one network holding every point (the envelope, the
slices each subnet takes), subnets extracted as plain ``build(config)`` modules, BN recalibration
and inherited scoring, and sandwich-rule training with in-place distillation.

Follows: Once-for-All (arXiv:1908.09791), AutoFormer (arXiv:2107.00651), BigNAS
(arXiv:2003.11142) / AttentiveNAS (arXiv:2011.09011).
"""

from explore.supernet.elastic import MIXER_SIZE_ORDER, PickTrial, Supernet, check_in_space, extract
from explore.supernet.inherit import RECALIBRATION_IMAGES, inherited_top1, recalibrate_bn
from explore.supernet.envelope import Envelope, StageEnvelope, envelope_of, subnet_group

__all__ = ["MIXER_SIZE_ORDER", "PickTrial", "Supernet", "check_in_space", "extract", "Envelope", "StageEnvelope",
           "envelope_of", "subnet_group", "RECALIBRATION_IMAGES", "inherited_top1", "recalibrate_bn"]
