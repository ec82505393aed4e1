"""One typed settings object, read from the environment (prefix ``LANDMARKS_``).

Only entry points (CLI, Celery app, bridge) call :func:`get_settings`; library functions take plain values.
Nested groups use ``__``: ``LANDMARKS_S3__ENDPOINT=127.0.0.1:8333``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class S3Settings(BaseModel):
    """S3-compatible object storage (SeaweedFS locally, MinIO/RustFS/Ceph RGW in deployment)."""

    endpoint: str = "127.0.0.1:8333"
    access_key: str = "landmarks"
    secret_key: SecretStr = SecretStr("landmarks-secret")
    secure: bool = False
    region: str = "us-east-1"
    photos_bucket: str = "photos"
    gallery_bucket: str = "gallery"
    models_bucket: str = "models"
    # Where users' browsers reach the storage when `endpoint` is an internal address (a proxy, a public host):
    # presigned URLs the API hands out are signed for this origin, e.g. "https://photos.example.com". None: the
    # internal endpoint, which suits a laptop only. A scheme and host[:port], no path (S3 signs the host).
    public_url: str | None = None

    @field_validator("public_url")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
            raise ValueError(f"public_url must be http(s)://host[:port] without a path, not {value!r}")
        return f"{parts.scheme}://{parts.netloc}"


class SeaweedSettings(BaseModel):
    """Ports of the local SeaweedFS (`weed mini`); gRPC ports are explicit because weed assumes HTTP+10000."""

    master_port: int = 9333
    master_grpc_port: int = 19333
    volume_port: int = 8080
    volume_grpc_port: int = 18080
    filer_port: int = 8888
    filer_grpc_port: int = 18888
    s3_port: int = 8333
    webdav_port: int = 7333
    admin_port: int = 23646
    admin_grpc_port: int = 33646


class RecognitionSettings(BaseModel):
    """Decision parameters; a model bundle's calibrated thresholds override the defaults here."""

    backbone: str = "efficientnet_lite2"
    pooling: str = "gem"
    image_size: int = 384  # long side; dev corpus: 0.89 landmark accuracy at 384 vs 0.79 at 260 (same rejection)
    # Which side of a photo is decoded to image_size (shared.imaging.fit_for_resize), fixed in a bundle when it is
    # built: "short" (a 12 MP JPEG at DCT 1/4, then Lanczos) or "long" (DCT 1/8, ~0.7x the decode time; on the dev
    # corpus 0.005-0.013 lower known-landmark accuracy, so not the default).
    decode_fit: Literal["short", "long"] = "short"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 16
    # Torch threads per recognize worker process. Measured here: 1 thread gives ~170 ms per photo where torch's
    # default (all cores) gives 1.2-2.7 s once several processes compete; scale with processes, not threads.
    worker_threads: int = 1
    weights_path: Path | None = None  # resnet50 / wide_resnet50_2 weights supplied by the operator
    non_landmark_rejection: float = 0.99
    # Share of unknown-landmark stand-ins (each gallery landmark decided without itself) the open-set score turns
    # away, calibrated when a model is built (shared/recognition/open_set.py); None switches it off.
    unknown_rejection: float | None = Field(default=0.9, gt=0, lt=1)
    # Untrained model builds embed in the gallery's supervised whitening with this many dimensions (carried by
    # the bundle as its head; shared/recognition/whitening.py): it separates known from unknown landmarks better.
    # None keeps the raw 1280-d features.
    whitening_dim: int | None = Field(default=512, ge=8)
    geo_radius_km: float = 1.0
    top_k: int = 1
    min_cluster_size: int = 0  # 0: scale to the gallery size
    max_pixels: int = 200_000_000
    # Memory one decode may take, worked out per format from the header (shared/imaging/budget.py); a picture
    # under max_pixels that would need more (a 16-bit or 32-bit bomb, a progressive JPEG's coefficients) is refused
    # as too_large. The default fits a worker's 1 GiB budget per decode.
    max_decode_bytes: int = Field(default=1 << 30, ge=1 << 20)
    # Recognition runs of one photo that may die with their worker (out of memory, a segfault) before the photo is
    # failed as worker_lost (counted in PostgreSQL: photos.delivery_count). A micro-batch runs a photo that was in
    # a lost run alone, after the others, so one poison photo never takes its batch with it again.
    max_deliveries: int = Field(default=3, ge=1)
    # Micro-batching on recognize workers (tasks/recognition.py, celery-batches): up to `micro_batch` queued photos,
    # gathered for at most `micro_batch_wait_ms` after the first, share ONE recognizer call (one letterboxed
    # forward pass). A GPU embeds a batch in little more than the time of one photo; a CPU's time grows with the
    # batch, so batching there only adds the wait. None = auto: 64 where the recognize device is CUDA, 1 (off)
    # elsewhere (shared/model/accelerator.py).
    # The wait is what a photo may add to its latency at low load; at high load batches fill before it ends.
    micro_batch: int | None = Field(default=None, ge=1)
    micro_batch_wait_ms: float = Field(default=50.0, gt=0)
    # The backbone's arithmetic: auto = fp16 on CUDA (embeddings within 0.9999 cosine of fp32, measured on an H200
    # and on the dev corpus), fp32 on CPU. bf16 is offered, but its 8-bit mantissa moved embeddings by up to 0.005.
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    # Threads that fetch, decode and resize a micro-batch's photos in parallel (Pillow and the S3 client release
    # the GIL). None = auto: 16 (at most the cores) on a CUDA worker, whose network outruns one decoding thread
    # a hundred times over; 1 on CPU workers, whose cores already each run a pool process.
    decode_threads: int | None = Field(default=None, ge=1)
    # What runs the network (shared/model/embedder.py): auto = ONNX Runtime on a CPU in fp32 (about 3x faster than
    # torch eager there, embeddings within 0.9999 cosine), torch on CUDA; `torch` or `onnxruntime` force one.
    engine: Literal["auto", "onnxruntime", "torch"] = "auto"
    # Where networks without a bundle-carried ONNX graph are exported once (by their hash); None: under model_store.
    onnx_cache: Path | None = None


class GallerySettings(BaseModel):
    """Gallery cleaning and mining candidates from uploads (``shared.gallery.cleaning``, ``shared.gallery.mining``)."""

    # Reject a photo whose mean cosine distance to its landmark's references exceeds this. Measured on
    # ../shared/data with the default backbone (efficientnet_lite2, GeM, 260 px): 0.5 keeps 94-97% of true
    # photos and rejects 96-97% of planted non-landmark photos. Depends on the backbone: re-measure on a change.
    cleaning_max_distance: float = 0.5
    auto_references: int = 5  # references per landmark without hand-picked ones: those closest to the mean
    mine_uploads: bool = False  # opt-in: GPS-tagged uploads of sharing users become gallery candidates
    mining_radius_km: float = 0.5  # tighter than recognition's: proposed on GPS alone (cleaning then judges)


DEFAULT_FLOWER_PASSWORD = "landmarks"  # the dev stack's; `landmarks dev status` shows it while unchanged


class FlowerSettings(BaseModel):
    port: int = 5555
    user: str = "admin"
    password: SecretStr = SecretStr(DEFAULT_FLOWER_PASSWORD)


class TimeLimitSettings(BaseModel):
    """Soft time limits (s) per kind of task: past it the task gets SoftTimeLimitExceeded and the failure is
    recorded (``time_limit``); its process is killed a little later (``tasks.limits.hard_limit``). Every hard limit
    must stay under ``broker_visibility_timeout_s``, or Redis hands a running task to a second worker."""

    ingest: float = 120.0
    reconcile: float = 3600.0  # lists the whole bucket
    recognize: float = 600.0  # a photo, or a GPU worker's micro-batch
    albums: float = 120.0
    cleaning: float = 3 * 3600.0
    training: float = 3 * 3600.0


class ApiClient(BaseModel):
    """A client of the albums API: its bearer token and the users it may serve (``"*"``: every user)."""

    token: SecretStr
    users: list[str] = Field(default_factory=list)
    read_only: bool = False  # True: may read albums but not post corrections
    operator: bool = False  # True: may also read the operators' routes (/v1/ops: reprocess jobs)


def _demo_api_clients() -> dict[str, ApiClient]:
    return {"demo": ApiClient(token=SecretStr("change-me-api-token"), users=["*"])}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LANDMARKS_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/landmarks"
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    state_dir: Path = REPO_ROOT / ".landmarks"
    model_store: Path = REPO_ROOT / ".landmarks" / "models"
    s3: S3Settings = Field(default_factory=S3Settings)
    seaweed: SeaweedSettings = Field(default_factory=SeaweedSettings)
    recognition: RecognitionSettings = Field(default_factory=RecognitionSettings)
    gallery: GallerySettings = Field(default_factory=GallerySettings)
    flower: FlowerSettings = Field(default_factory=FlowerSettings)
    time_limits: TimeLimitSettings = Field(default_factory=TimeLimitSettings)
    webhook_port: int = 8765
    webhook_token: SecretStr = SecretStr("change-me-webhook-token")
    webhook_max_body_bytes: int = 1_000_000
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # How long an album-browser sign-in lasts (a server-side session; the cookie never holds the client token).
    api_session_ttl_s: float = 12 * 3600.0
    # By client name; JSON in the environment: LANDMARKS_API_TOKENS='{"web": {"token": "...", "users": ["alice"]}}'.
    api_tokens: dict[str, ApiClient] = Field(default_factory=_demo_api_clients)
    reconcile_interval_s: float = 300.0
    # The sweep re-enqueues photos left pending/processing longer than this (their task was lost).
    stuck_after_s: float = 600.0
    # Reprocess jobs: the feeder tops the recognize queue up to this many waiting messages (~1.4 KB of Redis each),
    # every reprocess_feed_interval_s (Celery beat).
    reprocess_queue_bound: int = 5000
    reprocess_feed_interval_s: float = 10.0
    # The sweep pages the bucket listing and the photo rows this many keys at a time (bounded memory).
    sweep_page_size: int = 1000
    # A sweep that would mark more than this share of the bucket's live photos deleted deletes none (logged):
    # an empty or truncated listing (wrong bucket, storage hiccup) must not wipe albums.
    sweep_max_delete_share: float = 0.10
    # Redis hands an unacknowledged task to another worker after this: it must exceed the longest task and the
    # longest retry countdown (a worker holds a task that waits for its ETA unacknowledged).
    broker_visibility_timeout_s: float = 4 * 3600.0
    # Workers refresh their heartbeat key in Redis this often; `status` and /metrics count a worker online until
    # three beats are missed (a killed worker lingers that long; a stopped one leaves at once).
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _default_onnx_cache(self) -> Settings:
        """Exported networks live beside the bundles unless the operator chose a place."""
        if self.recognition.onnx_cache is None:
            self.recognition.onnx_cache = self.model_store / ".onnx"  # a dot: never a version name
        return self


@cache
def get_settings() -> Settings:
    return Settings()
