#!/bin/sh
# One-shot set-up of the compose MinIO, run by the `minio-setup` service (minio/mc image); safe to re-run.
# Buckets, an S3 user of the application's own (not the root user) and put/delete notifications on the photos
# bucket to the webhook target LANDMARKS that compose.yaml configures through MINIO_NOTIFY_WEBHOOK_*_LANDMARKS.
set -eu

ARN="arn:minio:sqs::LANDMARKS:webhook"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

for bucket in "$LANDMARKS_S3__PHOTOS_BUCKET" "$LANDMARKS_S3__GALLERY_BUCKET" "$LANDMARKS_S3__MODELS_BUCKET"; do
    mc mb --ignore-existing "local/$bucket"
done

# The workers' credentials: read/write on objects, no admin rights.
mc admin user add local "$LANDMARKS_S3__ACCESS_KEY" "$LANDMARKS_S3__SECRET_KEY"
if ! mc admin user info local "$LANDMARKS_S3__ACCESS_KEY" | grep -q readwrite; then
    mc admin policy attach local readwrite --user "$LANDMARKS_S3__ACCESS_KEY"
fi

# Only the photos bucket notifies: uploads become ingest tasks; gallery and model writes are the fleet's own.
mc event add --ignore-existing "local/$LANDMARKS_S3__PHOTOS_BUCKET" "$ARN" --event put,delete
mc event ls "local/$LANDMARKS_S3__PHOTOS_BUCKET"
