# syntax=docker/dockerfile:1
# The user-code image: a code server (`dagster api grpc`) and the image of every run and step pod
# launched from it.
#
#   docker build -t registry.example.com/turbine-dagster:$TAG .                           # CPU
#   docker build --build-arg VARIANT=gpu -t registry.example.com/turbine-dagster-gpu:$TAG .  # GPU
#
# The GPU variant adds TensorFlow's CUDA libraries as pip wheels (tensorflow[and-cuda]: CUDA runtime,
# cuDNN, cuBLAS, ...). The NVIDIA driver comes from the GPU node through the NVIDIA device plugin, so
# the image needs no CUDA base image.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# cpu | gpu
ARG VARIANT=cpu
# Keep equal to the tensorflow pin in pyproject.toml.
ARG TENSORFLOW_VERSION=2.21.*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/dagster/app

# The package only. Data, the venv and local instance state stay out of the image.
COPY pyproject.toml README.md ./
COPY turbine_dagster ./turbine_dagster

RUN pip install --upgrade pip \
 && pip install . \
 && if [ "$VARIANT" = "gpu" ]; then pip install "tensorflow[and-cuda]==${TENSORFLOW_VERSION}"; \
    elif [ "$VARIANT" != "cpu" ]; then echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 1; fi \
 && useradd --create-home --uid 1000 dagster \
 && mkdir -p "$DAGSTER_HOME" \
 && chown dagster "$DAGSTER_HOME"

USER dagster

# The gRPC port of the code server (the Helm chart's `port: 3030`).
EXPOSE 3030

# The training location by default. The Helm chart passes its own arguments (dagsterApiGrpcArgs), and
# run pods are started with `dagster api execute_run` in this image.
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "3030", "--module-name", "turbine_dagster.locations.training"]
