"""Automatic guides: a guide over exactly a model's latent choices, built from the model.

```python
guide = gv.guides.normal(model, model_args, observations)   # also mvn, low_rank_mvn, delta, flow
params = guide.init(key)
objective = gv.objectives.elbo(model, guide)
value = objective.estimate(key, model_args, (params,), observations)
```

Each continuous latent is mapped to the real line by numpyro's ``biject_to`` of its
support; the guide's family (mean-field or full-rank normal, low-rank normal, a point
mass, a normalizing flow) is a distribution over the concatenated unconstrained vector,
and each latent is scored with the change of variables. Discrete latents get learned
factors of their own, with a gradient strategy of your choice.
"""

from genvi.guides._api import delta, flow, low_rank_mvn, mvn, normal
from genvi.guides._guide import AutoGuide, LatentInfo

__all__ = ["normal", "mvn", "low_rank_mvn", "delta", "flow", "AutoGuide", "LatentInfo"]
