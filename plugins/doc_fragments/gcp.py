# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Options and notes the collection's Google Cloud modules share (with google.cloud.gcp's auth options)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)


class ModuleDocFragment:
    # llm_serving.gke.gcp: every module that calls Google Cloud APIs (listed after google.cloud.gcp, which documents
    # auth_kind, project, access_token, service_account_file, service_account_contents, service_account_email and
    # scopes with their GCP_* environment variables).
    DOCUMENTATION = r"""
options:
  timeout:
    description:
      - Seconds for the whole task, retries of HTTP 429 and 5xx (jittered exponential backoff) included.
    type: int
  compute_endpoint:
    description:
      - Base URL of the Compute Engine API. Change it for private endpoints or a local simulator.
    type: str
    default: https://compute.googleapis.com
notes:
  - Authentication is the one of C(google.cloud) (C(GcpSession)), including the C(GCP_*) environment variables
    that the AWX/AAP Google Compute Engine credential injects; O(auth_kind) is required (or C(GCP_AUTH_KIND)).
  - With O(auth_kind=application), O(auth_kind=serviceaccount) or O(auth_kind=machineaccount) one google-auth
    session serves the whole task and refreshes its token when it is about to expire. A bare O(access_token)
    (O(auth_kind=accesstoken)) cannot be refreshed; an HTTP 401 fails the task with C(error_kind=auth) and a
    message saying the token expired or was revoked.
  - When O(project) and C(GCP_PROJECT) are unset and O(auth_kind=application), the project of Application Default
    Credentials is used (what C(google.auth.default()) returns, from C(GOOGLE_CLOUD_PROJECT), the key file or
    gcloud's configuration).
requirements:
  - google-auth
  - requests
"""

    # llm_serving.gke.gcp.cluster: modules that address one GKE cluster through the Container API v1.
    CLUSTER = r"""
options:
  location:
    description:
      - Zone (V(europe-west4-a)) or region (V(europe-west4)) of the cluster.
    type: str
    required: true
  cluster:
    description:
      - Name of the GKE cluster.
    type: str
    required: true
  api_endpoint:
    description:
      - Base URL of the Container API. Change it for private endpoints or a local simulator.
    type: str
    default: https://container.googleapis.com
"""

    # llm_serving.gke.gcp.attributes: the attribute values of the collection's Google Cloud modules (listed before
    # ansible.builtin.action_common_attributes and its .actiongroups, which add the descriptions). Ansible merges
    # fragment attributes per attribute under the module's own (ansible.utils.plugin_docs add_fragments /
    # merge_fragment, ansible-core 2.19): a module that differs documents only the attribute keys that differ.
    ATTRIBUTES = r"""
attributes:
  action_group:
    support: full
    membership: [llm_serving.gke.gcp]
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: all
"""
