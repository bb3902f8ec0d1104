"""Where a request goes: versions, each alias's rollout state, and the sticky traffic split."""

from router.split import Arm, choose_arm, stickiness_key
from router.state import AliasState, RoutingSnapshot, VersionRecord

__all__ = ["AliasState", "Arm", "RoutingSnapshot", "VersionRecord", "choose_arm", "stickiness_key"]
