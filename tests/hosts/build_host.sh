#!/usr/bin/env bash
# build_host.sh a1111|forge DEST [HOSTS_SRC]
#
# A real WebUI for the tests, built as ../shared/hosts/README.md ("A verified build") builds it:
# the WebUI and the repositories its launch script pins, at their exact commits; a venv of its own
# with the torch it pins (AUTOMATIC1111 v1.10.1: torch 2.1.2 + torchvision 0.16.2; Forge dfdcbab6:
# 2.3.1 + 0.18.1) and its requirements_versions.txt; the tiny checkpoint it loads offline.
#
# Sources: HOSTS_SRC (default ../shared/hosts) holds the tarballs and unpack.sh. Where that folder
# is absent, the same commits are cloned from GitHub, as the WebUIs' own launch scripts do.
# Idempotent: a step whose result is there is skipped; the Makefile's stamp skips the whole script.
# Local pip configuration is kept out of every pip command (a find-links folder or a global
# constraint could install another torch build); packages come from the registry.
set -euo pipefail
KIND=${1:?usage: build_host.sh a1111|forge DEST [HOSTS_SRC]}
DEST=$2
SRC=${3:-${HOSTS_SRC:-../shared/hosts}}
[ -d "$SRC" ] && SRC=$(cd "$SRC" && pwd)  # absolute: the checkpoint makers run from inside the WebUI's folder
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_INDEX_URL PIP_EXTRA_INDEX_URL || true
PYTHON=${HOST_PYTHON:-python3.11}
say() { echo "[build_host $KIND] $*"; }

# ---- 1. the trees ------------------------------------------------------------------------------
clone_at() {  # url sha target: a shallow clone at one commit (what the launch scripts' git_clone makes)
  local url=$1 sha=$2 target=$3
  if [ -e "$target/.git" ] && [ "$(git -C "$target" rev-parse HEAD)" = "$sha" ]; then return 0; fi
  rm -rf "$target.partial"; mkdir -p "$target.partial"
  git -C "$target.partial" init -q
  git -C "$target.partial" remote add origin "$url"
  git -C "$target.partial" fetch -q --depth 1 origin "$sha"
  git -C "$target.partial" checkout -q --detach FETCH_HEAD
  if [ "$target" = "$DEST" ]; then  # the WebUI itself: its folder may already hold repositories/
    mkdir -p "$DEST"; (shopt -s dotglob; mv "$target.partial"/* "$DEST"/); rmdir "$target.partial"
  else mkdir -p "$(dirname "$target")"; mv "$target.partial" "$target"; fi
}

if [ -d "$SRC" ]; then
  bash "$SRC/unpack.sh" "$KIND" "$DEST"
else
  say "$SRC is absent: cloning the pinned commits from GitHub"
  gh=https://github.com
  case $KIND in
    a1111) clone_at $gh/AUTOMATIC1111/stable-diffusion-webui.git 82a973c04367123ae98bd9abdf80d9eda9b910e2 "$DEST"
           clone_at $gh/Stability-AI/stablediffusion.git cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf "$DEST/repositories/stable-diffusion-stability-ai"
           clone_at $gh/Stability-AI/generative-models.git 45c443b316737a4ab6e40413d7794a7f5657c19f "$DEST/repositories/generative-models"
           clone_at $gh/crowsonkb/k-diffusion.git ab527a9a6d347f364e3d185ba6d714e22d80cb3c "$DEST/repositories/k-diffusion" ;;
    forge) clone_at $gh/lllyasviel/stable-diffusion-webui-forge.git dfdcbab685e57677014f05a3309b48cc87383167 "$DEST"
           clone_at $gh/lllyasviel/huggingface_guess.git 84826248b49bb7ca754c73293299c4d4e23a548d "$DEST/repositories/huggingface_guess" ;;
  esac
  clone_at $gh/AUTOMATIC1111/stable-diffusion-webui-assets.git 6f7db241d2f8ba7457bac5ca9753331f0c266917 "$DEST/repositories/stable-diffusion-webui-assets"
  clone_at $gh/salesforce/BLIP.git 48211a1594f1321b00f14c9f7a5b4813144b2fb9 "$DEST/repositories/BLIP"
fi
DEST=$(cd "$DEST" && pwd)

# ---- 2. the venv ------------------------------------------------------------------------------
# Disk: the two venvs would hold the same 2.6 GB of CUDA runtime twice (torch 2.1.2 and 2.3.1 pin the
# same nvidia-*-cu12 wheels, NCCL aside) and pip's cache a third copy of every wheel. So pip keeps no
# cache here, and the shared runtime wheels are installed once, in $CUDA beside the trees, which each
# venv sees through a .pth file (torch finds nvidia/*/lib on sys.path). pip counts them as installed,
# so torch's own pins are met and the venv holds what it would otherwise hold, at the same versions;
# a pin that differs (Forge's NCCL) still goes into the venv itself, which comes first on sys.path.
export PIP_NO_CACHE_DIR=1
CUDA=$(dirname "$DEST")/nvidia-cu12
# Measured on a fresh build: A1111's venv 3.0 GB, Forge's 4.3 GB, the shared runtime 2.9 GB; the
# checkpoints under 1 GB each. Said before pip starts, rather than pip's "No space left on device".
free_gb=$(( $(df -k --output=avail "$(dirname "$DEST")" | tail -1) / 1048576 ))
need_gb=$(( $( [ "$KIND" = forge ] && echo 5 || echo 4 ) + $( [ -f "$CUDA/.ok" ] && echo 0 || echo 3 ) ))
say "${free_gb} GB free on $(dirname "$DEST"); this WebUI needs about ${need_gb} GB"
if [ -x "$DEST/venv/bin/python" ] || [ "$free_gb" -ge "$need_gb" ]; then :; else
  echo "build_host.sh: $(dirname "$DEST") has ${free_gb} GB free; building $KIND there needs about ${need_gb} GB" >&2
  exit 1
fi
CUDA_WHEELS="nvidia-cublas-cu12==12.1.3.1 nvidia-cuda-cupti-cu12==12.1.105 nvidia-cuda-nvrtc-cu12==12.1.105
  nvidia-cuda-runtime-cu12==12.1.105 nvidia-cudnn-cu12==8.9.2.26 nvidia-cufft-cu12==11.0.2.54
  nvidia-curand-cu12==10.3.2.106 nvidia-cusolver-cu12==11.4.5.107 nvidia-cusparse-cu12==12.1.0.106
  nvidia-nccl-cu12==2.18.1 nvidia-nvjitlink-cu12==12.9.86 nvidia-nvtx-cu12==12.1.105"  # torch 2.1.2's pins
if [ ! -f "$CUDA/.ok" ]; then
  rm -rf "$CUDA"
  "$PYTHON" -m pip install -q --no-input --no-deps --target "$CUDA" $CUDA_WHEELS
  touch "$CUDA/.ok"
fi
V=$DEST/venv/bin/python
test -x "$V" || "$PYTHON" -m venv "$DEST/venv"
echo "$CUDA" > "$("$V" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_sd_trainplan_nvidia_cu12.pth"
PIP="$V -m pip install -q --no-input"
case $KIND in
  a1111)
    $PIP torch==2.1.2 torchvision==0.16.2
    $PIP -r "$DEST/requirements_versions.txt"
    $PIP --no-deps clip-anytorch ;;
  forge)
    C=$(dirname "$DEST")/forge-constraints.txt  # outside the WebUI's tree (it would be an untracked file there)
    printf 'numpy==1.26.2\nprotobuf==3.20.0\nmediapipe<0.10.12\nopencv-python<4.12\n' > "$C"
    $PIP torch==2.3.1 torchvision==0.18.1 -c "$C"
    $PIP -r "$DEST/requirements_versions.txt" -c "$C"
    # what the built-in extensions' install.py would otherwise install, unconstrained, at the first launch
    $PIP fvcore "mediapipe<0.10.12" onnxruntime "opencv-python>=4.8.0,<4.12" svglib -c "$C"
    $PIP joblib -c "$C"
    $PIP --no-deps clip-anytorch -c "$C" ;;
esac
"$V" -m pip check

# ---- 3. the tiny checkpoints it loads offline (the makers are ours, from ../shared/hosts, kept here so a
# build without HOSTS_SRC has them; kept beside the tree: each test session copies or
# links them into its own --data-dir, so the WebUI's tree is never written) ---------------------
M=$(dirname "$DEST")/$KIND-models
case $KIND in
  a1111)
    # make_tiny_sd1.py reads ldm and configs/ from the WebUI folder it is given and writes models/
    # there; its yaml names the CLIP folder by absolute path, so it is made where it stays: in M
    mkdir -p "$M"; ln -sfn "$DEST/repositories" "$M/repositories"; ln -sfn "$DEST/configs" "$M/configs"
    test -f "$M/models/Stable-diffusion/tiny-sd1.safetensors" || \
      (cd "$DEST" && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$V" "$HERE/make_tiny_sd1.py" "$M" | tail -3)
    # the tiny SDXL (sgm from repositories/generative-models; its yaml names its CLIP-L folder in M)
    test -f "$M/models/Stable-diffusion/tiny-sdxl.safetensors" || \
      (cd "$DEST" && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$V" "$HERE/make_tiny_sdxl.py" "$M" | tail -5) ;;
  forge)
    test -f "$M/models/Stable-diffusion/rand-sd15-small.safetensors" || \
      (cd "$DEST" && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$V" "$HERE/make_forge_sd1.py" "$DEST" && \
       mkdir -p "$M/models/Stable-diffusion" && \
       mv "$DEST/models/Stable-diffusion/rand-sd15-small.safetensors" "$M/models/Stable-diffusion/") ;;
esac
say "ready: $DEST (venv $($V -c 'import torch; print("torch", torch.__version__)'))"
