"""bnlib.train: the models build for every norm, training is deterministic and learns the digits."""

import pytest
import torch

from bnlib.data import load_digits
from bnlib.train import NORMS, accuracy, mlp, norm_layer, small_cnn, train


@pytest.fixture(scope="module")
def flat():
    return load_digits(tensors=True)


@pytest.fixture(scope="module")
def images():
    return load_digits(images=True, tensors=True)


@pytest.mark.parametrize("norm", ["none", "bn", "ln"])
def test_mlp_learns_the_digits_and_is_deterministic(flat, norm):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = mlp((64, 32, 10), norm=norm)
        runs.append(train(model, flat, epochs=3, batch_size=32, lr=0.05, eval_every=20))
    assert runs[0].test_acc == runs[1].test_acc and runs[0].loss == runs[1].loss
    assert runs[0].final_test_acc > 0.85, runs[0].test_acc
    assert runs[0].steps[-1] == 3 * (len(flat.x_train) // 32)


@pytest.mark.parametrize("norm", NORMS)
def test_small_cnn_runs_with_every_norm(images, norm):
    torch.manual_seed(0)
    model = small_cnn(norm=norm)
    history = train(model, images, steps=30, batch_size=16, lr=0.05)
    assert history.steps == [30] and 0.0 <= history.final_test_acc <= 1.0
    assert model(images.x_test[:5]).shape == (5, 10)


def test_accuracy_in_train_mode_leaves_the_running_statistics_alone(flat):
    torch.manual_seed(0)
    model = mlp((64, 16, 10), norm="bn")
    train(model, flat, steps=20, batch_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    accuracy(model, flat.x_test, flat.y_test, train_mode=True, batch_size=4)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: norm_layer("batch", 4), "kind must be one of"),
        (lambda: norm_layer("gn", 6, dims=2, num_groups=4), "must divide the 6 channels"),
        (lambda: norm_layer("in", 6), "needs images"),
        (lambda: mlp((64, 10), activation="gelu"), "activation must be one of"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_train_needs_exactly_one_of_epochs_or_steps(flat):
    model = mlp((64, 10))
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        train(model, flat)
    with pytest.raises(ValueError, match="batch_size must be in"):
        train(model, flat, steps=1, batch_size=0)
