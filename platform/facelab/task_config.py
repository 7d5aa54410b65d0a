"""Typed task configs: one pydantic model per task, with the defaults and a one-line description
of every key (the attribute's docstring), shared bases for what tasks of a kind have in common.

A config key that does not exist, or a value of the wrong type, is an error that names the key,
the task and its valid keys, with a close-match suggestion: in `--config`, in a Tune space's
points and in a stored run alike.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from facelab.errors import FacelabError


class TaskConfig(BaseModel):
    """The base of every task's config: unknown keys are errors, defaults live here only.

    A subclass changes a base field's default by declaring it again (`epochs: int = 60`); the
    field keeps the base's bounds and description unless the subclass gives its own."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, protected_namespaces=(),
                              validate_default=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        for name, field in cls.model_fields.items():
            inherited = next((b.__pydantic_fields__[name] for b in cls.__mro__[1:]
                              if name in getattr(b, "__pydantic_fields__", {})), None)
            if inherited is None or inherited is field:
                continue
            if not field.description and inherited.description:
                field.description, changed = inherited.description, True
            if not field.metadata and inherited.metadata and field.annotation == inherited.annotation:
                field.metadata, changed = list(inherited.metadata), True
        if changed:
            cls.model_rebuild(force=True)


def config_error(task: str, model: type[TaskConfig], exc: ValidationError, source: str) -> FacelabError:
    """One readable line per problem: the key, what is wrong, a close match for a typo."""
    valid = list(model.model_fields)
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        if not key:  # a check across keys
            problems.append(error["msg"].removeprefix("Value error, "))
        elif error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(error["loc"][0]), valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{key}'{hint}")
        else:
            problems.append(f"key '{key}': {error['msg']} (got {error.get('input')!r})")
    return FacelabError(f"{source}: task '{task}' config: {'; '.join(problems)}; valid keys: {', '.join(valid)}")


def validated(task: str, model: type[TaskConfig], values: dict[str, Any] | None, *, source: str = "config") -> dict:
    """The task's full config (defaults updated by `values`) as a plain dict, or a FacelabError
    naming each bad key."""
    if values is not None and not isinstance(values, dict):
        raise FacelabError(f"{source}: a config is a mapping of keys to values, got {type(values).__name__}")
    try:
        return model.model_validate(values or {}).model_dump()
    except ValidationError as exc:
        raise config_error(task, model, exc, source) from None


def check_keys(task: str, model: type[TaskConfig], values: dict[str, Any], *, source: str) -> dict:
    """Validate a partial config (e.g. a demo or CPU-sized override set) without filling defaults;
    the given keys come back as validated (a relative local path made absolute)."""
    full = validated(task, model, values, source=source)
    return {key: full[key] for key in values}


def absolute_local(path: str | None) -> str | None:
    """A local path resolved against this process's working directory (Ray workers run elsewhere);
    a URI (s3://...) as it is."""
    if path is None or "://" in path:
        return path
    from facelab.config import absolute

    return str(absolute(path))


def describe_yaml(task: str, model: type[TaskConfig]) -> str:
    """The default config as YAML, each key preceded by its one-line description: ready to edit and
    pass back with `--config`."""
    import yaml

    defaults = model().model_dump()
    lines = [f"# {task}: default config ({model.__name__}); edit and pass back with --config FILE"]
    for key, field in model.model_fields.items():
        description = (field.description or "").strip().splitlines()
        if description:
            lines.append(f"# {' '.join(d.strip() for d in description)}")
        lines.append(yaml.safe_dump({key: defaults[key]}, default_flow_style=True, sort_keys=False, width=10_000)
                     .strip().removeprefix("{").removesuffix("}"))
    return "\n".join(lines) + "\n"


# --- shared bases ---------------------------------------------------------------------------------

class TorchConfig(TaskConfig):
    """What every task trained by facelab.torch_train reads (`TorchRecipe`, `fit_torch`, `TorchTask`)."""

    epochs: int = Field(ge=1)
    """training epochs (the best epoch by the task's metric becomes the model)"""
    batch_size: int = Field(ge=1)
    """training rows per optimisation step, per Train worker"""
    eval_batch_size: int | None = Field(None, ge=1)
    """validation rows per batch (null: batch_size)"""
    lr: float = Field(1e-3, gt=0)
    """learning rate"""
    weight_decay: float = Field(1e-2, ge=0)
    """weight decay"""
    seed: int = Field(0, ge=0, le=2**31 - 1024)
    """seed of the initial weights and of training's random draws (each Train worker adds its rank)"""
    early_stop_patience: int | None = Field(None, ge=1)
    """stop once the metric has not improved for this many epochs (null: train every epoch)"""
    num_workers: int | None = Field(None, ge=1)
    """Ray Train workers (null: one per GPU, else one)"""
    cpus_per_worker: float | None = Field(None, gt=0)
    """CPUs each Train worker reserves (null: the cluster's spare CPUs shared out, at most 4 each)"""
    run_name: str | None = None
    """the Train run's name: a rerun with the same name and storage_path resumes it (null: a new name)"""
    storage_path: Annotated[str | None, AfterValidator(absolute_local)] = None
    """where Train checkpoints live, a path or URI (null: $FACELAB_TRAIN_STORAGE, else ~/.facelab/train)"""

    @classmethod
    def optional_defaults(cls) -> dict[str, Any]:
        """The defaults of the fields a config may leave out (every one but epochs and batch_size)."""
        return {name: field.default for name, field in cls.model_fields.items() if not field.is_required()}


class ImageConfig(TorchConfig):
    """A torch task over face images through facelab.vision (`ImageRecipe`, `augmented`)."""

    image_size: int = Field(ge=8)
    """side in pixels of the square model input"""
    warmup_epochs: int = Field(1, ge=0)
    """epochs of linear learning-rate warm-up before the cosine decay"""
    aug_scale: float = Field(0.1, ge=0, lt=1)
    """training views are zoomed by up to this fraction"""
    aug_rotate: float = Field(10.0, ge=0, le=180)
    """training views are rotated by up to this many degrees"""
    aug_shift: float = Field(0.05, ge=0, lt=1)
    """training views are shifted by up to this fraction of the side"""
    aug_colour: float = Field(0.2, ge=0, lt=1)
    """training views' brightness and contrast vary by up to this fraction"""
    aug_grey: float = Field(0.0, ge=0, le=1)
    """probability that a training view is made greyscale"""


class StartsFromBackbone(TaskConfig):
    """The keys of an image task that can start from a facelab face backbone (facelab.backbone)."""

    backbone: str | None = None
    """start the ResNet trunk from this `backbone` run ("promoted" or a run id; null: random init; same width)"""
    freeze_backbone: bool = False
    """with `backbone`: train only the layers after the trunk (a feature extractor, for tiny data)"""


class ImagePredictorConfig(ImageConfig):
    """An image task whose predictor is facelab.vision's `ImagePredictor`."""

    tta_flip: bool = False
    """average each prediction with the mirrored image's"""


YoloOptimizer = Literal["SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp", "auto"]


class YoloConfig(TaskConfig):
    """An ultralytics YOLO fit (facelab.yolo). Every key but facelab's own (`merge_val`,
    `crop_double`) is an ultralytics training argument of the same name and meaning."""

    model: str = Field("yolov8n", pattern=r"^yolo[0-9a-z.-]+$")
    """ultralytics model, family and size (yolov5n, yolov8s, yolo11m, ...), trained from scratch"""
    imgsz: int = Field(640, ge=32)
    """input side in pixels"""
    epochs: int = Field(100, ge=1)
    """training epochs (the best epoch by the task's metric becomes the model)"""
    batch: int = Field(16, ge=1)
    """images per batch"""
    patience: int = Field(100, ge=0)
    """stop once validation fitness has not improved for this many epochs (0: never)"""
    optimizer: YoloOptimizer = "auto"
    """optimizer (auto: ultralytics picks by the number of iterations)"""
    lr0: float = Field(0.01, gt=0)
    """initial learning rate"""
    lrf: float = Field(0.01, gt=0, le=1)
    """final learning rate, as a fraction of lr0"""
    momentum: float = Field(0.937, ge=0, lt=1)
    """SGD momentum, Adam beta1"""
    weight_decay: float = Field(0.0005, ge=0)
    """weight decay"""
    cos_lr: bool = False
    """cosine learning-rate decay (else linear)"""
    warmup_epochs: float = Field(3.0, ge=0)
    """epochs of learning-rate warm-up"""
    plots: bool = True
    """ultralytics' training plots in the trial folder"""
    hsv_h: float = Field(0.015, ge=0, le=1)
    """hue augmentation (fraction)"""
    hsv_s: float = Field(0.7, ge=0, le=1)
    """saturation augmentation (fraction)"""
    hsv_v: float = Field(0.4, ge=0, le=1)
    """value (brightness) augmentation (fraction)"""
    scale: float = Field(0.5, ge=0, lt=1)
    """scale augmentation (zoom by up to this fraction; for classification the random crop's area)"""
    fliplr: float = Field(0.5, ge=0, le=1)
    """probability of a left-right flip"""
    flipud: float = Field(0.0, ge=0, le=1)
    """probability of an up-down flip"""
    merge_val: bool = False
    """facelab: also train on the val split (which stays the validation set)"""
    crop_double: float = Field(0.0, ge=0, lt=1)
    """facelab: > 0 adds to train a central crop of that fraction of every image, resized back"""


class YoloDetectConfig(YoloConfig):
    """A YOLO detector's fit: the detection augmentations besides YoloConfig's."""

    degrees: float = Field(0.0, ge=0, le=180)
    """rotation augmentation (+/- degrees)"""
    translate: float = Field(0.1, ge=0, lt=1)
    """translation augmentation (+/- fraction of the side)"""
    shear: float = Field(0.0, ge=0, le=180)
    """shear augmentation (+/- degrees)"""
    perspective: float = Field(0.0, ge=0, le=0.001)
    """perspective augmentation (fraction)"""
    mosaic: float = Field(1.0, ge=0, le=1)
    """probability of a four-image mosaic"""
    close_mosaic: int = Field(10, ge=0)
    """no mosaic in the last this many epochs"""
    mixup: float = Field(0.0, ge=0, le=1)
    """probability of mixing two images"""
    copy_paste: float = Field(0.0, ge=0, le=1)
    """probability of copy-paste augmentation (segmentation labels only)"""


class YoloClassifyConfig(YoloConfig):
    """A YOLO classifier's fit: the classification augmentations besides YoloConfig's."""

    erasing: float = Field(0.4, ge=0, le=0.9)
    """probability of random erasing"""
    auto_augment: Literal["randaugment", "autoaugment", "augmix"] | None = "randaugment"
    """automatic augmentation policy (null: none)"""
    dropout: float = Field(0.0, ge=0, lt=1)
    """dropout before the classification head"""


def known_detector(name: str) -> str:
    """`name` if facelab.faces has a detector of that name (imported only when a config is checked)."""
    from facelab.faces.detect import DETECTORS

    if name not in DETECTORS:
        raise ValueError(f"unknown face detector '{name}'; detectors: {', '.join(DETECTORS)}")
    return name


FaceDetector = Annotated[str, AfterValidator(known_detector)]


class FaceCodeConfig(TaskConfig):
    """Faces found and encoded by dlib's ResNet (facelab.faces, facelab.face_codes)."""

    detector: FaceDetector = "hog"
    """face detector: hog, cnn, mediapipe, mediapipe-full or haar (facelab.faces)"""
    jitters: int = Field(0, ge=0)
    """dlib's re-encodings of randomly perturbed crops, averaged (slower by that factor)"""


Family = Literal["svc", "lgbm", "rf", "knn", "logreg"]
Preprocess = Literal["none", "l1", "l2", "standard"]
Kernel = Literal["linear", "poly", "rbf", "sigmoid"]


class EstimatorConfig(TaskConfig):
    """A scikit-learn / LightGBM classifier of facelab.estimators: the family and its own
    hyper-parameters (each family reads only its own)."""

    model: Family = "svc"
    """classifier family: SVC, LightGBM, random forest, k nearest neighbours, logistic regression"""
    preprocess: Preprocess = "none"
    """feature scaling first: none, L1 or L2 row normalisation, standardisation"""
    kernel: Kernel = "rbf"
    """svc: kernel"""
    degree: int = Field(3, ge=1)
    """svc: degree of the poly kernel"""
    C: float = Field(1.0, gt=0)
    """svc, logreg: inverse regularisation strength"""
    gamma: Literal["scale", "auto", "value"] = "scale"
    """svc: kernel coefficient, scikit-learn's scale or auto rule, or gamma_value"""
    gamma_value: float | None = Field(None, gt=0)
    """svc: the kernel coefficient when gamma is 'value'"""
    num_leaves: int = Field(31, ge=2)
    """lgbm: leaves per tree"""
    learning_rate: float = Field(0.1, gt=0)
    """lgbm: boosting learning rate"""
    n_estimators: int | None = Field(None, ge=1)
    """lgbm, rf: trees (null: 200 for lgbm, 300 for rf)"""
    reg_lambda: float = Field(0.0, ge=0)
    """lgbm: L2 regularisation"""
    reg_alpha: float = Field(0.0, ge=0)
    """lgbm: L1 regularisation"""
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    """lgbm: fraction of the features each tree sees"""
    max_depth: int | None = Field(None, ge=1)
    """rf: tree depth (null: unlimited)"""
    n_neighbors: int = Field(15, ge=1)
    """knn: neighbours"""
    weights: Literal["uniform", "distance"] = "distance"
    """knn: neighbour weighting"""

    @model_validator(mode="after")
    def _gamma_value(self):
        if self.model == "svc" and self.gamma == "value" and self.gamma_value is None:
            raise ValueError("gamma 'value' needs a gamma_value")
        return self
