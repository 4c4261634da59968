import torch
from test_engine import ARCH, separable

from searcher.training.checkpoint import (
    classifier_from_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from searcher.training.engine import TrainConfig, Trainer
from searcher.training.model import build_model


def test_checkpoint_rebuilds_the_model_alone(tmp_path):
    trainer = Trainer(build_model(ARCH), TrainConfig(epochs=1, batch_size=32), separable(64),
                      separable(32), [0.3] * 3, [0.3] * 3)
    trainer.train_epoch()
    metrics = trainer.evaluate()
    save_checkpoint(tmp_path, arch=ARCH, train=TrainConfig(epochs=1).to_dict(), metrics=metrics,
                    classes=[str(i) for i in range(10)], mean=[0.3] * 3, std=[0.3] * 3,
                    trainer_state=trainer.state_dict())
    ckpt = load_checkpoint(tmp_path)  # weights_only=True: plain data only
    assert ckpt["arch"] == ARCH and ckpt["metrics"] == metrics
    model = classifier_from_checkpoint(ckpt)
    x, _ = separable(32)
    trainer.model.eval()
    expected = trainer.model((x.float() - 0.3 * 255) / (0.3 * 255))
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
