#!/usr/bin/env bash
# Create the cluster's security group: SSH from ADMIN_CIDR, all traffic between members of the
# group, nothing else (no dashboard, GCS or MLflow port open to any address range).
# Usage: VPC_ID=vpc-... ADMIN_CIDR=203.0.113.7/32 infra/aws/security_group.sh
# Prints the group id: put it in SecurityGroupIds of every node type in infra/aws/cluster.yaml.
set -euo pipefail
: "${VPC_ID:?set VPC_ID to the VPC the cluster runs in}"
: "${ADMIN_CIDR:?set ADMIN_CIDR to the address range allowed to SSH, e.g. your IP/32}"
NAME="${SG_NAME:-xfer-ray}"
sg=$(aws ec2 create-security-group --vpc-id "$VPC_ID" --group-name "$NAME" \
  --description "xfer Ray cluster: SSH from admin CIDR, intra-cluster traffic" \
  --query GroupId --output text)
aws ec2 authorize-security-group-ingress --group-id "$sg" \
  --ip-permissions "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=$ADMIN_CIDR}]" >/dev/null
aws ec2 authorize-security-group-ingress --group-id "$sg" \
  --ip-permissions "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$sg}]" >/dev/null
echo "$sg"
