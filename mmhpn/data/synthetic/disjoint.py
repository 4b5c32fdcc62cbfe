"""The check that a pretraining set shares no person with the test split it is scored on.

Stand-in pretraining sets (presets ``pretrain``, ``tiny-pretrain``) draw their people from
another identity stream than the sets they are evaluated on; `check_disjoint_identities`
verifies that, person by person.
"""
from __future__ import annotations

from mmhpn.data.synthetic.identities import appearance
from mmhpn.data.synthetic.planning import Plan
from mmhpn.errors import DatasetError


def check_disjoint_identities(pretrain: Plan, evaluation: Plan) -> int:
    """Check that no person of `pretrain` (any split, distractors included) is a test identity of `evaluation`.

    Identities are compared by their whole appearance (`appearance`), not by their ids (the
    ids of two datasets are unrelated). Returns the number of pretraining people checked;
    raises DatasetError naming the shared ones, e.g. when both were drawn from the same
    identity stream and seed.
    """
    test_people = {appearance(evaluation.identities[pid]): pid for pid in evaluation.test_pids}
    shared = sorted({(key, test_people[appearance(ident)]) for key, ident in pretrain.identities.items()
                     if appearance(ident) in test_people}, key=str)
    if shared:
        listed = ", ".join(f"{a} = test id {b:04d}" for a, b in shared[:5])
        raise DatasetError(
            f"the pretraining set shares {len(shared)} people with the evaluation test split ({listed}); "
            f"draw it from another identity_stream (pretrain uses {pretrain.config.identity_stream}, "
            f"evaluation {evaluation.config.identity_stream})"
        )
    return len(pretrain.identities)
