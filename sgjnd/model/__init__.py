"""The PyTorch reference model of SG-JND: network, registry and checkpoints.

Needs torch (``pip install 'sgjnd[torch]'``); the lean runtime never imports this package.

Example:
    >>> from pathlib import Path
    >>> from sgjnd.model import create_model, save_checkpoint
    >>> model = create_model("sgjnd_tiny", seed=0)
    >>> sidecar = save_checkpoint(model, Path("tiny.pt"), weights="UNTRAINED: random initialisation from seed 0")
"""

from sgjnd.model.checkpoint import StateDictDiff as StateDictDiff
from sgjnd.model.checkpoint import checkpoint_sha256 as checkpoint_sha256
from sgjnd.model.checkpoint import diff_state_dict as diff_state_dict
from sgjnd.model.checkpoint import load_backbone_weights as load_backbone_weights
from sgjnd.model.checkpoint import load_checkpoint as load_checkpoint
from sgjnd.model.checkpoint import save_checkpoint as save_checkpoint
from sgjnd.model.effnet import sgjnd_effl0 as sgjnd_effl0
from sgjnd.model.registry import create_model as create_model
from sgjnd.model.registry import is_model as is_model
from sgjnd.model.registry import list_models as list_models
from sgjnd.model.registry import register_model as register_model
from sgjnd.model.resnet import ResNet as ResNet
from sgjnd.model.sgjnd_net import SGJND as SGJND
from sgjnd.model.sgjnd_net import CSALayer as CSALayer
from sgjnd.model.sgjnd_net import SGJNDConfig as SGJNDConfig
from sgjnd.model.sgjnd_net import SGJNDEncoder as SGJNDEncoder
from sgjnd.model.sgjnd_net import SGJNDHead as SGJNDHead
from sgjnd.model.sgjnd_net import aggregate as aggregate
from sgjnd.model.sgjnd_net import model_from_spec as model_from_spec
