"""Autoencoder models: one registry of kinds (registry.py), one base class (base.py).

Importing this package registers every built-in kind:

| kind          | module          | model                                                     |
|---------------|-----------------|-----------------------------------------------------------|
| `ae`          | mlp.py          | one hidden layer, under/overcomplete, optional tied weights |
| `deep`        | mlp.py          | deep MLP autoencoder (Hinton & Salakhutdinov, 2006)       |
| `sparse`      | mlp.py          | KL (target rho) or L1 sparsity penalty on the code        |
| `conv`        | conv.py         | strided conv encoder / transposed-conv decoder, any H x W |
| `denoising`   | denoising.py    | any kind trained on inputs corrupted by `ops.corrupt`     |
| `contractive` | contractive.py  | sigmoid encoder + `ops.contractive_penalty`               |
| `vae`         | vae.py          | MLP or conv VAE with `ops.reparameterize`                 |
| `stacked`     | stacked.py      | stacked denoising AE with greedy layer-wise pretraining   |
| `lstm`        | lstm.py         | sequence autoencoder for (T, F) time series               |
| `resconv`     | resconv.py      | residual conv denoiser for blind Gaussian noise (FFDNet-like) |
| `resunet`     | resunet.py      | blind colour denoiser for real photographs: residual U-Net + noise-level map |

What a kind is (variational, generator, layout, output activation, its own input corruption,
contractive, pretraining) is declared as ``model.traits`` (:class:`ModelTraits`, base.py); how it
trains as ``training_steps()`` and ``pretraining_stages()``. Nothing outside asks ``hasattr``.

`Classifier` (classifier.py) puts a linear head on any model's codes. `from_onnx.py` rebuilds a
conv model's weights from its exported graph (a run folder again, for ``train.init_from``).
"""

from aetk.models.base import Autoencoder, ModelTraits, PretrainingStage, TrainingStep
from aetk.models.registry import MODELS, create_model, model_names, register_model

# Kind modules, imported for their @register_model side effect.
from aetk.models import mlp, conv, denoising, contractive, vae, stacked, lstm, resconv, resunet  # noqa: E402,F401,I001
from aetk.models.classifier import Classifier  # noqa: E402

__all__ = ["MODELS", "Autoencoder", "Classifier", "ModelTraits", "PretrainingStage", "TrainingStep", "create_model",
           "model_names", "register_model"]
