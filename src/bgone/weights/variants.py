"""Every official BiRefNet checkpoint: where it comes from and what it is (a data table).

Each variant records its source (Hugging Face repo + file + revision, and the GitHub release
``.pth`` where one exists), the SHA-256 where a public record of it was found, the backbone and
design, the native operating resolution and the patch order it was trained with. Sources and the
evidence for each fact are in ``docs/checkpoint-sources.md``.

Patch order: on 2024-11-05 the official code changed how image patches are stacked into
channels (``legacy`` → ``einops``) without changing any weight shape. Checkpoints trained before
that date learnt the legacy order; current official code feeds every checkpoint the einops order.
bgone feeds each checkpoint the order it was trained with by default (``patch_order=`` overrides,
e.g. to reproduce the current official code bit for bit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bgone.nn.types import Design, PatchOrder

RELEASE = "https://github.com/ZhengPeng7/BiRefNet/releases/download/v1/"


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    backbone: str
    design: Design
    patch_order: PatchOrder
    resolution: tuple[int, int] | None  # (width, height); None: the image's own size (dynamic models)
    hf_repo: str | None
    hf_filename: str = "model.safetensors"
    hf_revision: str = "main"
    release_filename: str | None = None  # asset name on the GitHub release v1
    sha256: str | None = None  # of the file at hf_repo/hf_filename@hf_revision
    trained: str = ""  # when the weights were published, as far as known
    description: str = ""
    aliases: tuple[str, ...] = ()
    path: str | None = None  # custom variants: a local checkpoint file

    @property
    def release_url(self) -> str | None:
        return RELEASE + self.release_filename if self.release_filename else None

    @property
    def hf_url(self) -> str | None:
        if not self.hf_repo:
            return None
        return f"https://huggingface.co/{self.hf_repo}/resolve/{self.hf_revision}/{self.hf_filename}"

    @property
    def local_filename(self) -> str:
        """The file name bgone looks for in its model directory."""
        if self.hf_filename.endswith(".pth"):
            return self.hf_filename
        return f"{self.name}.safetensors"

    @property
    def resolution_label(self) -> str:
        return "dynamic (own size, /32, max 2304)" if self.resolution is None else "{}x{}".format(*self.resolution)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(release_url=self.release_url, hf_url=self.hf_url)
        return data


def _v(name: str, title: str, repo: str | None, release: str | None, **kw: object) -> Variant:
    kw.setdefault("backbone", "swin_v1_l")
    kw.setdefault("design", "v1")
    kw.setdefault("patch_order", "legacy")
    kw.setdefault("resolution", (1024, 1024))
    return Variant(name=name, title=title, hf_repo=repo, release_filename=release, **kw)  # type: ignore[arg-type]


BUILTIN_VARIANTS: tuple[Variant, ...] = (
    _v(
        "general",
        "General use (Swin-L)",
        "ZhengPeng7/BiRefNet",
        "BiRefNet-general-epoch_244.pth",
        sha256="77277264c0e8c74149d3ff2fade4fd8176965b7108f3c5fc3b8c9c811edb4519",
        trained="2024-07",
        description="Default general-purpose model: DIS, HRSOD, UHRSD, HRS10K, P3M and humans.",
        aliases=("BiRefNet", "birefnet-general", "heavy"),
    ),
    _v(
        "lite",
        "General use, lite (Swin-T)",
        "ZhengPeng7/BiRefNet_lite",
        "BiRefNet-general-bb_swin_v1_tiny-epoch_232.pth",
        backbone="swin_v1_t",
        trained="2024-08",
        description="Same data as general on a Swin-T backbone: 5x fewer parameters.",
        aliases=("BiRefNet_lite", "BiRefNet_T", "birefnet-general-lite", "light"),
    ),
    _v(
        "lite-2k",
        "General use, lite 2K (Swin-T, 2560x1440)",
        "ZhengPeng7/BiRefNet_lite-2K",
        "BiRefNet_lite-general-2K-epoch_232.pth",
        backbone="swin_v1_t",
        resolution=(2560, 1440),
        sha256="aa2e4a5af5eb3904694feb40f2b39ec5dd7cd9110906590cfeb982f09a46021d",
        trained="2024-09",
        description="Swin-T trained at 2560x1440 (W x H) for 2K landscape images.",
        aliases=("BiRefNet_lite-2K", "light-2k"),
    ),
    _v(
        "512x512",
        "General use at 512x512 (Swin-L)",
        "ZhengPeng7/BiRefNet_512x512",
        "BiRefNet-general-resolution_512x512-fp16-epoch_216.pth",
        patch_order="einops",
        resolution=(512, 512),
        trained="2024-12",
        description="Swin-L trained at 512x512 for fast low-resolution use (weights stored in fp16).",
        aliases=("BiRefNet_512x512", "BiRefNet-reso_512", "reso-512"),
    ),
    _v(
        "hr",
        "General use, high resolution (Swin-L, 2048x2048)",
        "ZhengPeng7/BiRefNet_HR",
        "BiRefNet_HR-general-epoch_130.pth",
        patch_order="einops",
        resolution=(2048, 2048),
        trained="2025-02",
        description="Swin-L trained at 2048x2048 (weights stored in fp16).",
        aliases=("BiRefNet_HR", "general-hr"),
    ),
    _v(
        "hr-matting",
        "Matting, high resolution (Swin-L, 2048x2048)",
        "ZhengPeng7/BiRefNet_HR-matting",
        "BiRefNet_HR-matting-epoch_135.pth",
        patch_order="einops",
        resolution=(2048, 2048),
        trained="2025-02",
        description="Trimap-free matting at 2048x2048 (weights stored in fp16).",
        aliases=("BiRefNet_HR-matting",),
    ),
    _v(
        "matting",
        "Matting (Swin-L)",
        "ZhengPeng7/BiRefNet-matting",
        "BiRefNet-matting-epoch_100.pth",
        hf_revision="cd932446205ce9ad963078f0d70de2d26674f716",
        sha256="a9875de5b1e6c8eb5fdaa8c727a82927ce442cdc87ba3abee6a77e6fa46c25bb",
        trained="2024-10",
        description="Trimap-free matting: soft alpha for hair, fur and transparency.",
        aliases=("BiRefNet-matting",),
    ),
    _v(
        "lite-matting",
        "Matting, lite (Swin-T)",
        "ZhengPeng7/BiRefNet_lite-matting",
        None,
        backbone="swin_v1_t",
        patch_order="einops",
        trained="unknown (patch order inferred)",
        description="Matting on Swin-T.",
        aliases=("BiRefNet_lite-matting",),
    ),
    _v(
        "portrait",
        "Portrait (Swin-L)",
        "ZhengPeng7/BiRefNet-portrait",
        "BiRefNet-portrait-epoch_150.pth",
        sha256="4a4eb3a5469b75f0cccaec6772c22fc30e6c12ed429c2c0ba71b43e3d8d97182",
        trained="2024-08",
        description="Portrait segmentation/matting: P3M-10k and humans.",
        aliases=("BiRefNet-portrait", "birefnet-portrait"),
    ),
    _v(
        "dynamic",
        "General use, dynamic resolution (Swin-L)",
        "ZhengPeng7/BiRefNet_dynamic",
        "BiRefNet_dynamic-general-epoch_174.pth",
        patch_order="einops",
        resolution=None,
        trained="2025-03",
        description="Trained on random sizes 256..2304: runs at the image's own size.",
        aliases=("BiRefNet_dynamic",),
    ),
    _v(
        "dynamic-matting",
        "Matting, dynamic resolution (Swin-L)",
        "ZhengPeng7/BiRefNet_dynamic-matting",
        None,
        patch_order="einops",
        resolution=None,
        trained="2025 (inferred)",
        description="Matting trained on random sizes 256..2304.",
        aliases=("BiRefNet_dynamic-matting",),
    ),
    _v(
        "dis",
        "DIS benchmark (Swin-L, DIS5K-TR)",
        "ZhengPeng7/BiRefNet-DIS5K",
        "BiRefNet-DIS-epoch_590.pth",
        sha256="6641691e0484f458e1f72ec15ecf2856c07de1bd9500a05895ba57f9b9da7bee",
        trained="2024-08",
        description="Dichotomous image segmentation, trained on DIS5K-TR only.",
        aliases=("BiRefNet-DIS5K", "birefnet-dis"),
    ),
    _v(
        "hrsod",
        "HRSOD benchmark (Swin-L)",
        "ZhengPeng7/BiRefNet-HRSOD",
        "BiRefNet-HRSOD_DHU-epoch_115.pth",
        hf_revision="9c64804471c4266336c4b7638626e0301e04250d",
        sha256="dcc61b9f2074f5d4cb36c022c060543359047811cab426aa6dfa8a48f5034b8c",
        trained="2024-08",
        description="High-resolution salient object detection (DUTS + HRSOD + UHRSD).",
        aliases=("BiRefNet-HRSOD", "birefnet-hrsod"),
    ),
    _v(
        "cod",
        "COD benchmark (Swin-L)",
        "ZhengPeng7/BiRefNet-COD",
        "BiRefNet-COD-epoch_125.pth",
        hf_revision="f648b6efa109baf9da3d597ffb43bc60df6cf24b",
        sha256="6c321deba6f15147f325566d0470e75e7258bf481f5e0b6c667659530d40019e",
        trained="2024-08",
        description="Camouflaged object detection (COD10K + CAMO).",
        aliases=("BiRefNet-COD", "birefnet-cod"),
    ),
    _v(
        "massive",
        "DIS5K TR+TEs, 'massive' (Swin-L)",
        "ZhengPeng7/BiRefNet-DIS5K-TR_TEs",
        "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.pth",
        trained="2024-05",
        description="Trained on DIS5K-TR and DIS-TEs.",
        aliases=("BiRefNet-DIS5K-TR_TEs", "birefnet-massive"),
    ),
    _v(
        "legacy",
        "Legacy general (Swin-L, massive epoch 240)",
        "ZhengPeng7/BiRefNet-legacy",
        None,
        hf_revision="62fffc4c59b029946ef3aa2e4e28b38f5669d603",
        sha256="40e4ef76d28bc11380c7833fb2a834c327a90fae698797fca3c2afbf9d9a42cc",
        trained="2024-05",
        description="The May-2024 general model (DIS + HRSOD + UHRSD + HRS10K); same weights as massive-epoch_240.",
        aliases=("BiRefNet-legacy",),
    ),
    # The files that the hosted fal-ai/birefnet (v1) endpoint names.
    _v(
        "massive-ep240",
        "fal v1 'General Use (Heavy)': BiRefNet-massive-epoch_240.pth",
        "ZhengPeng7/BiRefNet-legacy",
        None,
        hf_filename="BiRefNet-massive-epoch_240.pth",
        hf_revision="63fb713d7826f9b548863d9dd289799f9380e44d",
        sha256="1ccb3959dfa99b85d7b1f57dcf59616873ff5f45e0a3f1e0b14b07f6ee74b01f",
        trained="2024-05",
        description="The original .pth of 'legacy'.",
        aliases=("BiRefNet-massive-epoch_240",),
    ),
    _v(
        "dis-ep580",
        "fal v1 'General Use (Light)': BiRefNet-DIS_ep580.pth (paper-era design)",
        "ViperYX/BiRefNet",
        None,
        design="v0",
        hf_filename="BiRefNet-DIS_ep580.pth",
        hf_revision="5f1ce5fdca895da5217f3a63296fe807b7184b76",
        sha256="9b4510f31d72e41507a4b75c4e62206b1d7e2223e0125b29644acd4b142793b0",
        trained="2024-03",
        description="Paper-era DIS model (v0 design); mirrored on Hugging Face by a third party.",
        aliases=("BiRefNet-DIS_ep580",),
    ),
    _v(
        "portrait-p3m-ep120",
        "fal v1 'Portrait': BiRefNet-portrait-TR_P3M_10k-epoch_120.pth",
        "ZhengPeng7/BiRefNet-portrait",
        None,
        hf_filename="BiRefNet-portrait-TR_P3M_10k-epoch_120.pth",
        hf_revision="925c4cdaa0be9ea5882b2f5a0eec317bd94e7639",
        sha256="9a31ed736e17bc36a7ab539b71419b27f69b839e8ba132c6a67fe77edceb4141",
        trained="2024-05",
        description="Portrait model trained on P3M-10k.",
        aliases=("BiRefNet-portrait-TR_P3M_10k-epoch_120",),
    ),
)

