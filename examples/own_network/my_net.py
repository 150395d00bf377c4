"""The user's network, in their own file: slt-deploy imports it by name (my_net.py:make or my_net.py:make_class)."""

import snntorch as snn
from torch import nn


def make(hidden: int = 128, beta: float = 0.9):
    """The snnTorch tutorials' Sequential form; reset to zero (what Loihi and Lava implement)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, hidden), snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(hidden, 10), snn.Leaky(beta=beta, init_hidden=True, output=True, reset_mechanism="zero"),
    )


class Net(nn.Module):
    """The class form: forward handles ONE time step (slt-deploy runs the time loop); non-spiking readout."""

    def __init__(self, hidden: int = 128, beta: float = 0.9):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.lif1 = snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero")
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(self.lif1(self.fc1(x.flatten(1))))


def make_class(hidden: int = 128, beta: float = 0.9):
    return Net(hidden, beta)
