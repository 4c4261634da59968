#!/usr/bin/env bash
# Print the current image id for cluster.yaml's ImageId: AWS's Deep Learning Base OSS Nvidia
# Driver GPU AMI (Ubuntu 24.04: Python 3.12, NVIDIA driver and CUDA; no PyTorch, which
# setup-node.sh installs at the pinned version), from the public SSM parameter AWS updates with
# every release. Usage: find-ami.sh REGION (the provider's region in cluster.yaml).
set -euo pipefail
region=${1:?usage: find-ami.sh REGION}
parameter=/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id
command -v aws >/dev/null || { echo "find-ami: install the AWS CLI (v2) and sign in (aws configure)" >&2; exit 1; }
aws ssm get-parameter --region "$region" --name "$parameter" --query Parameter.Value --output text
