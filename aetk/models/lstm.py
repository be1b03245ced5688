"""LSTM sequence autoencoder (kind ``lstm``) for multivariate time series."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from aetk.models.base import Autoencoder, ModelTraits
from aetk.models.layers import (
    ReconstructionHead,
    check_loss,
    check_dropout,
    check_output,
    check_positive_int,
)
from aetk.models.registry import register_model


@register_model("lstm")
class LSTMAutoencoder(Autoencoder):
    """Sequence-to-sequence LSTM autoencoder (Srivastava, Mansimov & Salakhutdinov,
    "Unsupervised learning of video representations using LSTMs", ICML 2015; for
    multivariate time series: Malhotra et al., "LSTM-based encoder-decoder for multi-sensor
    anomaly detection", 2016). Input (T, F) (or (T,) for one feature):

        (h_T, c_T) = LSTM_enc(x_1..x_T),     z = W_z h_T + b_z         (code_size)
        g_1..g_T = LSTM_dec(z, z, ..., z),   x_hat_t = out(W_o g_t + b_o)

    The decoder is teacher-free: it sees the code repeated at every step, never the data,
    so the code must carry the whole sequence. Loss: mse (default), bce or gaussian_nll.
    """

    @dataclass
    class Config:
        hidden_size: int = 64
        code_size: int = 16
        num_layers: int = 1
        dropout: float = 0.0  # between stacked LSTM layers (num_layers > 1)
        loss: str = "mse"
        output: str = "linear"

        def __post_init__(self):
            check_positive_int("hidden_size", self.hidden_size)
            check_positive_int("code_size", self.code_size)
            check_positive_int("num_layers", self.num_layers)
            check_dropout(self.dropout)
            check_loss(self.loss)
            check_output(self.output)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        if len(self.input_shape) not in (1, 2):
            raise ValueError(
                f"model 'lstm' needs sequences of shape (T, F) or (T,), got input shape {self.input_shape}"
            )
        self.steps = self.input_shape[0]
        self.features = self.input_shape[1] if len(self.input_shape) == 2 else 1
        drop = float(c.dropout) if c.num_layers > 1 else 0.0
        self.encoder = nn.LSTM(self.features, c.hidden_size, c.num_layers, batch_first=True, dropout=drop)
        self.to_code = nn.Linear(c.hidden_size, c.code_size)
        self.decoder = nn.LSTM(c.code_size, c.hidden_size, c.num_layers, batch_first=True, dropout=drop)
        self.to_output = nn.Linear(c.hidden_size, self.features)
        self.head = ReconstructionHead(c.loss, c.output, self.input_shape)

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(layout="sequence", output_activation=self.head.output_name)

    def encode(self, x: Tensor) -> Tensor:
        _, (h, _) = self.encoder(x.reshape(x.shape[0], self.steps, self.features))
        return self.to_code(h[-1])

    def decode_raw(self, z: Tensor) -> Tensor:
        seq = z.unsqueeze(1).expand(z.shape[0], self.steps, z.shape[1])
        g, _ = self.decoder(seq)
        return self.to_output(g).reshape(z.shape[0], *self.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        return self.head.data(self.decode_raw(z))

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        z = self.encode(x)
        raw = self.decode_raw(z)
        recon = self.head.loss(raw, target)
        return {"x_hat": self.head.data(raw), "z": z, "recon": recon, "loss": recon}
