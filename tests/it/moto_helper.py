"""Start a moto server on a free loopback port, seed it, print one JSON line, then
serve until stdin closes (i.e. until the test process that spawned us exits).

usage: python3 moto_helper.py plain|auth|s3

plain: SSM parameters and Secrets Manager secrets for the resolution tests.
auth:  the same server kind with IAM enforcement switched on after seeding; the JSON
       carries the keys of a user allowed ssm:GetParameters but not
       secretsmanager:GetSecretValue.
s3:    an empty S3 bucket (`bucket` in the JSON) for the S3 cache store tests.
"""

import json
import sys

import boto3
from moto import settings
from moto.server import ThreadedMotoServer

VERSION_1 = "00000000-0000-4000-8000-000000000001"
VERSION_2 = "00000000-0000-4000-8000-000000000002"


def clients(endpoint, key="test", secret="test"):
    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )
    return boto3.client("ssm", **kw), boto3.client("secretsmanager", **kw), kw


def seed_plain(ssm, sm, out):
    ssm.put_parameter(Name="/t/plain", Value="plain-value", Type="String")
    ssm.put_parameter(Name="/t/secure", Value="secure-value", Type="SecureString")
    for v in ("v1", "v2", "v3"):
        ssm.put_parameter(Name="/t/versioned", Value=v, Type="String", Overwrite=True)
    ssm.label_parameter_version(Name="/t/versioned", ParameterVersion=1, Labels=["old"])
    for i in range(25):
        ssm.put_parameter(Name=f"/t/batch/{i:02}", Value=f"batch-{i:02}", Type="SecureString")

    created = sm.create_secret(
        Name="t/db",
        SecretString=json.dumps({"username": "admin", "password": "pw-1", "port": 5432}),
        ClientRequestToken=VERSION_1,
    )
    sm.put_secret_value(
        SecretId="t/db",
        SecretString=json.dumps(
            {"username": "admin", "password": "pw-2", "port": 5432, "opts": {"ssl": True}}
        ),
        ClientRequestToken=VERSION_2,
    )
    out["db_arn"] = created["ARN"]
    out["db_version_1"] = VERSION_1
    out["db_version_2"] = VERSION_2
    sm.create_secret(Name="t/text", SecretString="just-text")
    sm.create_secret(Name="t/bin-text", SecretBinary=b"binary-but-text")
    sm.create_secret(Name="t/bin", SecretBinary=b"\xff\xfe\x00\x01")


def seed_auth(endpoint, ssm, sm, out):
    ssm.put_parameter(Name="/auth/param", Value="auth-param-value", Type="SecureString")
    sm.create_secret(Name="auth/secret", SecretString="auth-secret-value")
    iam = boto3.client("iam", **clients(endpoint)[2])
    iam.create_user(UserName="limited")
    iam.put_user_policy(
        UserName="limited",
        PolicyName="ssm-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "*"}
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="limited")["AccessKey"]
    out["access_key_id"] = key["AccessKeyId"]
    out["secret_access_key"] = key["SecretAccessKey"]
    # From now on every request is authenticated and authorized against IAM.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


S3_BUCKET = "runner-cache-tests"


def seed_s3(out, kw):
    boto3.client("s3", **kw).create_bucket(Bucket=S3_BUCKET)
    out["bucket"] = S3_BUCKET


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "plain"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    ssm, sm, kw = clients(endpoint)
    out = {"endpoint": endpoint}
    if mode == "s3":
        seed_s3(out, kw)
    elif mode == "auth":
        seed_auth(endpoint, ssm, sm, out)
    else:
        seed_plain(ssm, sm, out)
    print(json.dumps(out), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
