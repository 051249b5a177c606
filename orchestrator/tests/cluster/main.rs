//! The orchestrator against real services: the Kubernetes API server of
//! `deploy/local/kubernetes.sh` (with the harness kubelet) and the OpenBao
//! of `deploy/local/openbao.sh`; and the committed CRD against its type.

mod crd;
mod instances;
mod openbao;
