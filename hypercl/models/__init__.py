"""Target networks: MLPs (MNIST), CIFAR ResNets (ResNet-32), and the registry that lets checkpoints rebuild them."""

from .mlp import MLP, mlp
from .registry import MODELS, build_model, model_spec, register_model
from .resnet import BasicBlock, CifarResNet, ResNet32, cifar_resnet, resnet32
from .vae import VAE, vae, vae_loss

__all__ = [
    "MLP",
    "mlp",
    "MODELS",
    "build_model",
    "model_spec",
    "register_model",
    "BasicBlock",
    "CifarResNet",
    "ResNet32",
    "cifar_resnet",
    "resnet32",
]
__all__ += ["VAE", "vae", "vae_loss"]
