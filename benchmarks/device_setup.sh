# Sourced by the device checks (gpu_check.sh, gpu_profile.sh) on a lent GPU machine with no package index.
# The wheels of what its image lacks travel in .whl, made here with `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 ...`:
# gymnasium, farama-notifications, ale-py, mujoco, mujoco-core, mujoco-studio, glfw, pyopengl,
# stable-baselines3, sb3-contrib, tyro, docstring-parser, typeguard, fastapi, starlette, pydantic,
# pydantic-core, annotated-types, typing-inspection, uvicorn (and py-spy for the profile), at the versions of
# our venv. imageio-ffmpeg (a 30 MB binary) is replaced by a stub: no clip is encoded there. The in-tree
# package is used through two links (prefrl/envs, prefrl/labeling_gui), as the install's package-dir mapping
# would. Sets t0 (the start, for elapsed times).
export PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-disable}  # nothing is rendered there, and its image has no EGL
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/site/imageio_ffmpeg && echo 'def get_ffmpeg_exe(): raise RuntimeError("no ffmpeg here")' > /tmp/site/imageio_ffmpeg/__init__.py
ln -sfn ../envs prefrl/envs; ln -sfn ../labeling_gui prefrl/labeling_gui
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
echo "install $(( $(date +%s) - t0 ))s"; nproc; nvidia-smi -L
python3 -c "import torch, prefrl, ale_py, mujoco, stable_baselines3 as s; print(torch.__version__, torch.cuda.is_available(), s.__version__)" || exit 1
