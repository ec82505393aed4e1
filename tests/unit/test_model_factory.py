"""One road from settings to a network: `model build`, gallery cleaning and training embed with the backbone,
pooling, image size and engine the settings name (model build used EmbedderConfig() defaults before)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import workers.cli.model
from shared.gallery.cleaning import run_cleaning
from shared.model import Embedder, EmbedderConfig
from shared.model.factory import bundle_embedder, config_from_settings, embedder_from_settings
from shared.settings import RecognitionSettings, Settings
from shared.training.service import train_from_options

ENV = {
    "LANDMARKS_RECOGNITION__BACKBONE": "resnet50",
    "LANDMARKS_RECOGNITION__POOLING": "avg",
    "LANDMARKS_RECOGNITION__IMAGE_SIZE": "224",
    "LANDMARKS_RECOGNITION__DEVICE": "cpu",
    "LANDMARKS_RECOGNITION__ENGINE": "torch",
    "LANDMARKS_RECOGNITION__DECODE_FIT": "long",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Settings:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LANDMARKS_MODEL_STORE", str(tmp_path / "models"))
    return Settings()


def test_settings_place_the_onnx_cache_beside_the_bundles(settings: Settings, tmp_path: Any) -> None:
    assert settings.recognition.onnx_cache == tmp_path / "models" / ".onnx"
    assert settings.recognition.engine == "torch"


def test_build_cleaning_and_training_embed_with_the_settings_network(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def capture(name: str) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            embedder = next(a for a in args if isinstance(a, Embedder))
            seen[name] = (embedder, kwargs["min_side"], kwargs.get("fit"))
            return SimpleNamespace(version="v1", status=SimpleNamespace(value="ready"), thresholds={}, metrics={})

        return run

    # model build (the CLI command)
    # (the command imports these when it runs, so they are patched where they live)
    monkeypatch.setattr("shared.settings.get_settings", lambda: settings)
    monkeypatch.setattr("workers.runtime.minio_client", lambda: None)
    monkeypatch.setattr("shared.storage.ensure_buckets", lambda *a: None)
    monkeypatch.setattr("workers.runtime.session_factory", lambda: None)
    monkeypatch.setattr("shared.versions.build.build_model", capture("build"))
    monkeypatch.setattr(workers.cli.model.console, "print", lambda *a, **k: None)
    workers.cli.model.model_build(activate=False)
    # gallery cleaning (the task and `gallery clean --wait`)
    monkeypatch.setattr("shared.gallery.cleaning.clean_gallery", capture("clean"))
    run_cleaning(settings, None, None)  # type: ignore[arg-type]
    # training (the task and `model train --wait`)
    monkeypatch.setattr("shared.storage.ensure_buckets", lambda *a: None)
    monkeypatch.setattr("shared.training.service.train_model_version", capture("train"))
    train_from_options(settings, None, None, {})  # type: ignore[arg-type]

    expected = EmbedderConfig(backbone="resnet50", pooling="avg", image_size=224, decode_fit="long")
    for name in ("build", "clean", "train"):
        embedder, min_side, fit = seen[name]
        # the gallery decoded to the side the settings name, as queries are; training works it out from the embedder
        assert (name, embedder.config, min_side, fit) == (name, expected, 224, None if name == "train" else "long")
        assert (embedder.device_name, embedder.engine_name) == ("cpu", "torch")


def test_the_factory_makes_one_embedder_per_process_for_the_same_settings() -> None:
    rec = RecognitionSettings(image_size=128, device="cpu")
    assert embedder_from_settings(rec) is embedder_from_settings(rec)
    assert embedder_from_settings(rec, classifier=True) is not embedder_from_settings(rec)
    assert config_from_settings(rec, image_size=64).image_size == 64
    assert config_from_settings(rec, image_size=None).image_size == 128


def test_a_bundle_network_takes_its_config_from_the_manifest_and_its_engine_from_settings() -> None:
    rec = RecognitionSettings(device="cpu", engine="onnxruntime")
    embedder = bundle_embedder(rec, {**EmbedderConfig(image_size=96).to_dict(), "embedding_dim": 1280})
    assert embedder.config.image_size == 96 and embedder.engine_name == "onnxruntime"
    assert embedder is not bundle_embedder(rec, {"image_size": 96})  # bundles carry tensors: never shared
