"""Shared fixtures: the small real models the tests convert, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# See converter/tfjs_export.py: tensorflowjs's dependency imports IPython when stdout is captured.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = Path(__file__).parent / "data"

pytest_plugins = ["tests.db_fixtures", "tests.redis_fixtures", "tests.storage_fixtures"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tf1_graph(models_dir: Path):  # type: ignore[no-untyped-def]
    from bench import model_factory

    return model_factory.write_tf1_graph(models_dir / "tf1.pb", models_dir / "tf1.pbtxt")


@pytest.fixture(scope="session")
def multihead_graph(models_dir: Path):  # type: ignore[no-untyped-def]
    from bench import model_factory

    return model_factory.write_multihead_graph(models_dir / "pose.pb")


@pytest.fixture(scope="session")
def keras_frozen(models_dir: Path):  # type: ignore[no-untyped-def]
    from bench import model_factory

    return model_factory.write_frozen_from_keras(models_dir / "keras_frozen.pb")


@pytest.fixture(scope="session")
def saved_model(models_dir: Path):  # type: ignore[no-untyped-def]
    from bench import model_factory

    return model_factory.write_saved_model(models_dir / "saved_model")


@pytest.fixture(scope="session")
def keras_h5(models_dir: Path):  # type: ignore[no-untyped-def]
    from bench import model_factory

    return model_factory.write_h5(models_dir / "classifier.h5")


@pytest.fixture(scope="session")
def keras_v3(models_dir: Path):  # type: ignore[no-untyped-def]
    from bench import model_factory

    return model_factory.write_keras_v3(models_dir / "classifier.keras")


@pytest.fixture(scope="session")
def tf():  # type: ignore[no-untyped-def]
    import tensorflow

    return tensorflow


@pytest.fixture(scope="session")
def fer_model() -> Path:
    return DATA / "fer_emotion_model.hdf5"
