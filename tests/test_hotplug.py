"""PCIe hot-plug on q35 root ports, seen from inside a real Linux guest through the agent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import wait_until
from linux_vm import booted_linux

import petri_nb
from petri_nb.vm.agent import Agent

VIRTIO_VENDOR = "0x1af4"


#: This module's Linux VM lives across tests; linux_vm.booted_linux checks for leftovers at the end.
VM_SHARED_ACROSS_TESTS = True


@pytest.fixture(scope="module")
def booted() -> Iterator[tuple[petri_nb.Vm, Agent]]:
    with booted_linux() as (vm, agent, _):
        yield vm, agent


def guest_sees(agent: Agent, command: str) -> str:
    return agent.run(command).stdout.decode()


def virtio_pci_devices(agent: Agent) -> set[str]:
    out = guest_sees(agent, f"grep -l {VIRTIO_VENDOR} /sys/bus/pci/devices/*/vendor")
    return set(out.split())


@pytest.mark.slow
def test_hot_plugged_disk_appears_in_the_guest_and_disappears_on_removal(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    before = virtio_pci_devices(agent)
    info = vm.add_pcie_device("virtio-blk", size_mib=8)
    port = info["port"]
    wait_until(lambda: "vda" in guest_sees(agent, "ls /sys/block"), timeout=30, what="vda in the guest")
    assert len(virtio_pci_devices(agent) - before) == 1
    assert guest_sees(agent, "cat /sys/block/vda/size").strip() == str(8 * 2048)  # 512-byte sectors
    # The guest can use it: write through the device and read it back.
    assert agent.run("echo -n petri | dd of=/dev/vda bs=512 conv=sync 2>/dev/null && head -c 5 /dev/vda").stdout \
        == b"petri"

    vm.remove_pcie_device(port)
    assert "vda" not in guest_sees(agent, "ls /sys/block")
    assert virtio_pci_devices(agent) == before
    kinds = list(vm.timeline().kind)
    assert "pcie plugged" in kinds and "pcie unplugged" in kinds and "DEVICE_DELETED" in kinds


@pytest.mark.slow
def test_hot_plugged_nic_appears_as_an_interface_with_its_mac(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    info = vm.add_pcie_device("virtio-net", mac="52:54:00:12:34:56")
    wait_until(lambda: "52:54:00:12:34:56" in guest_sees(agent, "cat /sys/class/net/*/address"),
               timeout=30, what="the NIC in the guest")
    vm.remove_pcie_device(info["port"])
    assert "52:54:00:12:34:56" not in guest_sees(agent, "cat /sys/class/net/*/address")


@pytest.mark.slow
def test_bad_hotplug_requests_are_clear_errors_and_the_vm_stays_usable(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    with pytest.raises(petri_nb.PetriError, match="no PCIe root port named 'rp99'"):
        vm.remove_pcie_device("rp99")
    with pytest.raises(petri_nb.PetriError, match="is empty"):
        vm.remove_pcie_device("rp1")
    with pytest.raises(petri_nb.PetriError, match="unknown PCIe device kind"):
        vm.add_pcie_device("sound-card")
    with pytest.raises(petri_nb.PetriError, match="does not exist"):
        vm.add_pcie_device("virtio-blk", image="/no/such/image.raw")
    with pytest.raises(petri_nb.PetriError, match="unknown disk format"):
        vm.add_pcie_device("virtio-blk", format="vmdk")
    info = vm.add_pcie_device("virtio-blk", "rp2", format="qcow2")
    with pytest.raises(petri_nb.PetriError, match="already holds"):
        vm.add_pcie_device("virtio-net", "rp2")
    vm.remove_pcie_device(info["port"])
    assert agent.run("echo usable").stdout == b"usable\n"


def test_a_vm_without_root_ports_cannot_hot_plug(vm: petri_nb.Vm) -> None:
    with pytest.raises(petri_nb.PetriError, match="no PCIe root ports"):
        vm.add_pcie_device("virtio-blk")
    with pytest.raises(petri_nb.PetriError, match="no PCIe root port named 'rp1'"):
        vm.remove_pcie_device("rp1")
    vm.console.write("echo alive\n")
    vm.console.expect("alive", timeout=10)
