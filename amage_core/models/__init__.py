"""Brain-age models: AMAge-Net and its variants (see ``VARIANTS``).

``build_model(cfg.model, InputSpec(...))`` returns a :class:`BrainAgeModel` whose ``forward`` takes a
``torch_geometric`` ``Batch`` of per-participant ``Data`` objects (see
``amage_core.data.graph.participant_data``) and returns a :class:`ModelOutput`.
"""
from amage_core.models.amagenet import (
    VARIANTS,
    BrainAgeModel,
    build_model,
    count_parameters,
    resolve_config,
)
from amage_core.models.spec import InputSpec, ModelOutput

__all__ = [
    "VARIANTS",
    "BrainAgeModel",
    "InputSpec",
    "ModelOutput",
    "build_model",
    "count_parameters",
    "resolve_config",
]
