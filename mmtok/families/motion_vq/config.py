"""The motion VQ-VAE family (`motion_vq`), torch-free: recipe schema, presets, loss terms.

T2M-GPT (Zhang et al. 2023; MotionGPT uses the same): a 1-D conv encoder over per-frame pose features with
`down_t` stride-2 stages (x4 with two), each followed by dilated residual blocks, a codebook of 512 codes of
dim 512 with EMA updates (0.99) and dead-code reset, a mirrored decoder. MoMask (Guo et al. 2024): the same
network with a residual VQ of 6 levels and quantizer dropout 0.2. The model takes raw features [B, T, D] and
carries their Mean/Std as buffers (read from `stats` when trained, from the weights when loaded); see
mmtok.families.motion_vq.model and mmtok.modalities.motion.layout for the feature layouts.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mmtok.families import Family, register
from mmtok.losses.config import LossConfig
from mmtok.modalities.motion.layout import FEATURES, FeatureLayout, layout_for
from mmtok.quantize.config import AnyQuantizerConfig, QuantizerConfig
from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict


class MotionVQConfig(Strict):
    """A 1-D conv VQ-VAE over windows of per-frame motion features."""

    family: Literal["motion_vq"] = "motion_vq"
    preset: Optional[str] = Field(None, description="named preset the fields start from")
    features: Literal[FEATURES + ("auto",)] = Field(
        "humanml3d", description="feature layout: humanml3d (263-d, 22 SMPL joints), deepmimic (215-d, DeepMimic's "
        "humanoid), positions (any skeleton: root-relative positions and velocities, 6 * num_joints dims) or auto "
        "(chosen from the first clip of the training data when `mmtok train` starts: humanml3d for a BVH skeleton "
        "that maps onto SMPL's joints, else positions)")
    num_joints: Optional[int] = Field(None, ge=2, description="joints of the 'positions' layout (the BVH's)")
    joint_map: dict[str, str] = Field(default_factory=dict, description="BVH joint name -> SMPL joint name, "
                                      "for BVH skeletons the built-in names miss (humanml3d layout)")
    bvh_scale: Optional[float] = Field(None, gt=0, description="metres per BVH unit (default: scale the rest "
                                       "pose to 1.7 m tall)")
    fps: float = Field(20.0, gt=0, description="frames per second of the features (HumanML3D: 20)")
    window: int = Field(64, ge=4, description="frames per training / validation window")
    mirror: bool = Field(False, description="training windows are mirrored left-right half the time (BVH and "
                         "DeepMimic clips: positions reflected, left and right joints swapped; feature files are "
                         "used as they are)")
    stats: Optional[str] = Field(None, description="the Mean/Std of the training features: a folder with "
                                 "Mean.npy and Std.npy (HumanML3D's, or written by `mmtok data pack`), an .npz "
                                 "with mean and std, 'train' (computed from the run's training clips when "
                                 "`mmtok train` starts, saved as RUN/stats.npz), 'demo' (the built-in clips' "
                                 "training split) or 'identity' (mean 0, std 1: features already normalised, or tests)")
    width: int = Field(512, ge=8, description="channels of the conv encoder and decoder")
    depth: int = Field(3, ge=1, description="dilated residual blocks per stage")
    dilation_growth: int = Field(3, ge=1, description="dilation of block i is dilation_growth ** i")
    down_t: int = Field(2, ge=0, description="stride-2 stages: one token per 2 ** down_t frames")
    quantizer: AnyQuantizerConfig = Field(default_factory=lambda: QuantizerConfig(
        codebook_size=512, dim=512, l2_norm=False, ema=True, ema_decay=0.99, kmeans_init=True, kmeans_iters=1,
        restart_after=200))

    @property
    def layout(self) -> FeatureLayout:
        if self.features == "auto":
            from mmtok.errors import RecipeError

            raise RecipeError("model.features=auto is settled from the training clips when `mmtok train` starts",
                              hint="train with this recipe, or set model.features (humanml3d, deepmimic or positions)")
        return layout_for(self.features, self.num_joints)

    @property
    def downsample(self) -> int:
        return 2 ** self.down_t

    @model_validator(mode="after")
    def _consistent(self):
        if self.features == "auto" and self.stats not in ("train", "identity"):
            raise FieldProblem("stats", "features=auto settles the layout when training starts, so the statistics "
                               "must come from the training clips too: model.stats=train")
        if self.features == "positions" and self.num_joints is None:
            raise FieldProblem("num_joints", "the positions layout needs the skeleton's joint count (num_joints)")
        if self.features != "positions" and self.num_joints is not None:
            raise FieldProblem("num_joints", f"the {self.features} layout has a fixed skeleton; num_joints applies to "
                               "features=positions only")
        if self.window % self.downsample:
            raise FieldProblem("window", f"window {self.window} is not a multiple of the downsample factor "
                               f"{self.downsample} (2 ** down_t)")
        return self


MOTION_TERMS = ("features", "joint_positions", "velocity", "commitment", "codebook")


class MotionLoss(LossConfig):
    """features: smooth-L1 on every normalised feature (T2M-GPT's reconstruction loss); joint_positions: smooth-L1
    on the normalised root-relative joint positions slice (T2M-GPT's "loss_vel", which is positions, weight 0.5);
    velocity: smooth-L1 between frame-to-frame differences of that slice (real finite differences over time);
    commitment (0.02 in T2M-GPT / MoMask) and codebook (a VQ trained by gradient, not EMA) from the quantizer."""

    TERMS: ClassVar[tuple[str, ...]] = MOTION_TERMS
    DEFAULTS: ClassVar[dict[str, float]] = {"features": 1.0, "joint_positions": 0.5, "commitment": 0.02,
                                            "codebook": 1.0}


# T2M-GPT's QuantizeEMAReset: EMA 0.99, codes initialised from encoder outputs of the first batch (here k-means
# with one Lloyd step from them), and a code reset to a random encoder output when its EMA count falls below 1,
# which for a code of average use at T2M-GPT's batch (256 windows x 16 tokens over 512 codes: 8 uses a step)
# happens after about 200 idle steps; mmtok counts idle steps (restart_after).
_T2M_VQ = dict(kind="vq", codebook_size=512, dim=512, l2_norm=False, ema=True, ema_decay=0.99, kmeans_init=True,
               kmeans_iters=1, restart_after=200)

PRESETS = {
    # T2M-GPT / MotionGPT on HumanML3D: 263-d at 20 fps, 64-frame windows, width 512, depth 3, dilation 3, x4;
    # 512 x 512 codes, EMA 0.99, dead-code reset (see _T2M_VQ). Batch 256, lr 2e-4, 300k steps in its recipe.
    "t2m_gpt": dict(features="humanml3d", fps=20.0, window=64, width=512, depth=3, dilation_growth=3, down_t=2,
                    quantizer=_T2M_VQ),
    # MoMask's residual VQ: the same network, 6 levels of 512 x 512 codes, quantizer dropout 0.2.
    "momask_rvq": dict(features="humanml3d", fps=20.0, window=64, width=512, depth=3, dilation_growth=3, down_t=2,
                       quantizer={**_T2M_VQ, "kind": "rvq", "levels": 6, "quantizer_dropout": 0.2}),
    # CPU quick start on the built-in DeepMimic clips: 32-frame windows at 20 fps (8 tokens), width 128, 256 codes.
    "motion_small": dict(features="deepmimic", fps=20.0, window=32, width=128, depth=2, dilation_growth=3, down_t=2,
                         stats="demo", quantizer={**_T2M_VQ, "codebook_size": 256, "dim": 128, "restart_after": 20}),
    # Tiny presets for tests (a forward in milliseconds), with identity statistics (mean 0, std 1).
    "test_motion": dict(features="deepmimic", fps=20.0, window=16, width=16, depth=1, dilation_growth=2, down_t=2,
                        stats="identity", quantizer={**_T2M_VQ, "codebook_size": 16, "dim": 8, "restart_after": 5}),
    "test_motion_rvq": dict(features="positions", num_joints=4, fps=10.0, window=8, width=16, depth=2,
                            dilation_growth=2, down_t=1, stats="identity",
                            quantizer={**_T2M_VQ, "kind": "rvq", "levels": 3, "codebook_size": 8, "dim": 8,
                                       "restart_after": 5, "quantizer_dropout": 0.5}),
}

FAMILY = register(Family(name="motion_vq", modality="motion", model_config=MotionVQConfig, loss_config=MotionLoss,
                         model="mmtok.families.motion_vq.model:MotionVQ",
                         objective="mmtok.modalities.motion.objective:MotionObjective", presets=PRESETS,
                         prepare="mmtok.modalities.motion.prepare:prepare_motion"))
