# Packer template: a Rocky Linux 9 image (QEMU) that converges by itself with gitops.
# The kickstart (http/ks.cfg) installs the gitops RPM served by Packer's HTTP server and runs
# `gitops install-units` in %post: one line instead of the article's 80-line %post heredoc.
#
#   packaging/build.sh                       # builds target/.../gitops-*.rpm
#   cp target/generate-rpm/gitops-*.x86_64.rpm packaging/packer/http/gitops.rpm
#   packer init packaging/packer && packer build \
#     -var repo_url=git@git.example.com:org/node-config.git packaging/packer
#
# The deploy key is not baked into the image (an image is shared; a key should not be):
# write it at first boot (packaging/cloud-init/user-data.yaml) or on a volume.

packer {
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = "~> 1"
    }
  }
}

variable "repo_url" {
  type        = string
  description = "Git URL of the configuration repository the machines follow."
}

variable "branch" {
  type    = string
  default = "main"
}

# The "latest" name stays put when a point release moves the previous one to the vault; its
# checksum is read from the CHECKSUM file published beside it. Pin both for reproducible images.
variable "iso_url" {
  type    = string
  default = "https://download.rockylinux.org/pub/rocky/9/isos/x86_64/Rocky-9-latest-x86_64-minimal.iso"
}

variable "iso_checksum" {
  type    = string
  default = "file:https://download.rockylinux.org/pub/rocky/9/isos/x86_64/CHECKSUM"
}

variable "disk_size" {
  type    = string
  default = "20G"
}

source "qemu" "rocky9" {
  accelerator      = "kvm"
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  disk_size        = var.disk_size
  memory           = 2048
  cpus             = 2
  headless         = true
  http_directory   = "${path.root}/http"
  communicator     = "none"
  shutdown_timeout = "1h"
  # The kickstart reads the repository and the HTTP server's address from the kernel line.
  boot_command = [
    "<up><tab><bs><bs><bs><bs><bs>",
    " inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg inst.cmdline",
    " gitops.http=http://{{ .HTTPIP }}:{{ .HTTPPort }}",
    " gitops.repo_url=${var.repo_url} gitops.branch=${var.branch}<enter><wait>",
  ]
  output_directory = "output-rocky9"
  vm_name          = "rocky9-gitops.qcow2"
  format           = "qcow2"
}

build {
  sources = ["source.qemu.rocky9"]
}
