"""The image catalog: reference parsing, entrypoint/cmd rules, built-in images, the config file, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kubelite.images as images
from kubelite.images.busybox import busybox_applets, find_busybox, prepare_busybox_bin_dir
from kubelite.images.catalog import (
    AGNHOST_MODULE,
    HOST_PATH,
    ImageCatalog,
    ImageConfigError,
    ImageError,
    ImageReference,
    ImageRule,
    ResolvedCommand,
    load_image_config,
    parse_image_config,
    parse_reference,
)

PY = "/opt/python3"
BB = "/var/lib/kubelite/busybox-bin"
ROOT = "/src"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


@pytest.fixture
def catalog() -> ImageCatalog:
    return ImageCatalog(python=PY, busybox_bin_dir=BB, pythonpath=ROOT)


def agnhost(*args: str) -> tuple[str, ...]:
    return (PY, "-S", "-m", AGNHOST_MODULE, *args)


# ---------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", ImageReference("docker.io", "library/busybox", "latest", None)),
        ("busybox:1.36", ImageReference("docker.io", "library/busybox", "1.36", None)),
        ("docker.io/library/busybox:1.36", ImageReference("docker.io", "library/busybox", "1.36", None)),
        ("index.docker.io/busybox", ImageReference("docker.io", "library/busybox", "latest", None)),
        ("bitnami/nginx", ImageReference("docker.io", "bitnami/nginx", "latest", None)),
        ("localhost/app", ImageReference("localhost", "app", "latest", None)),
        ("localhost:5000/a/b:v1", ImageReference("localhost:5000", "a/b", "v1", None)),
        ("Registry.Example/app", ImageReference("Registry.Example", "app", "latest", None)),
        ("[fd00::1]:5000/app:v2", ImageReference("[fd00::1]:5000", "app", "v2", None)),
        (AGNHOST, ImageReference("registry.k8s.io", "e2e-test-images/agnhost", "2.47", None)),
        (
            "busybox@sha256:" + "a" * 64,
            ImageReference("docker.io", "library/busybox", None, "sha256:" + "a" * 64),
        ),
        ("my-app__x.y:Tag_1.0-rc", ImageReference("docker.io", "library/my-app__x.y", "Tag_1.0-rc", None)),
    ],
)
def test_parse_reference(image: str, expected: ImageReference) -> None:
    assert parse_reference(image) == expected


def test_reference_forms() -> None:
    ref = parse_reference("nginx:1.25@sha256:" + "b" * 64)
    assert ref.normalized == "docker.io/library/nginx:1.25@sha256:" + "b" * 64
    assert ref.familiar_repository == "nginx"
    assert ref.name == "nginx"
    assert parse_reference("busybox").normalized == "docker.io/library/busybox:latest"
    assert parse_reference("quay.io/a/b").familiar_repository == "quay.io/a/b"


@pytest.mark.parametrize(
    ("image", "detail"),
    [
        ("Busybox", "repository name must be lowercase"),
        ("docker.io/Library/busybox", "repository name must be lowercase"),
        ("busy box", "invalid reference format"),
        ("busybox:", "is not a valid tag"),
        ("busybox:-x", "is not a valid tag"),
        ("busybox@sha256:abc", "is not a valid digest"),
        ("busybox@sha256:" + "A" * 64, "a sha256 digest is 64 lower-case hex digits"),
        ("a" * 256, "must not be more than 255 characters"),
        ("/busybox", "invalid reference format"),
        ("busybox/", "invalid reference format"),
        ("-bad.example/x", "is not a valid registry host"),
    ],
)
def test_invalid_references(image: str, detail: str) -> None:
    with pytest.raises(ImageError) as info:
        parse_reference(image)
    assert info.value.reason == "InvalidImageName"
    assert detail in info.value.message
    assert f'couldn\'t parse image reference "{image}"' in info.value.message
    assert info.value.message.endswith("Fix the image field of the container.")


def test_empty_image_is_invalid(catalog: ImageCatalog) -> None:
    with pytest.raises(ImageError) as info:
        catalog.resolve("", [], [])
    assert info.value.reason == "InvalidImageName"
    assert "has no image" in info.value.message


# ---------------------------------------------------------------- agnhost and pause


def test_agnhost_default_is_pause(catalog: ImageCatalog) -> None:
    assert catalog.resolve(AGNHOST, [], []) == ResolvedCommand(
        agnhost("pause"), (("PATH", f"{BB}:{HOST_PATH}"), ("PYTHONPATH", ROOT)), "agnhost"
    )


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        ([], ["netexec", "--http-port=8080"], agnhost("netexec", "--http-port=8080")),  # ENTRYPOINT + args
        (["/agnhost", "serve-hostname"], [], agnhost("serve-hostname")),  # command replaces both
        (["/agnhost"], ["porter"], agnhost("porter")),  # command + args
        (["agnhost", "pause"], [], agnhost("pause")),
        (["/bin/sh", "-c", "sleep 1"], [], ("/bin/sh", "-c", "sleep 1")),  # the image's shell
        (["sleep"], ["10"], ("sleep", "10")),
    ],
)
def test_agnhost_command_and_args(
    catalog: ImageCatalog, command: list[str], args: list[str], argv: tuple[str, ...]
) -> None:
    resolved = catalog.resolve(AGNHOST, command, args)
    assert resolved.argv == argv
    assert resolved.image_kind == "agnhost"
    assert dict(resolved.env)["PATH"].startswith(BB + ":")


@pytest.mark.parametrize(
    "image",
    [
        "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "k8s.gcr.io/e2e-test-images/agnhost:2.20",
        "gcr.io/kubernetes-e2e-test-images/agnhost:2.8",
        "registry.k8s.io/e2e-test-images/agnhost@sha256:" + "c" * 64,
        "mirror.example:5000/e2e-test-images/agnhost:2.47",
    ],
)
def test_agnhost_registries(catalog: ImageCatalog, image: str) -> None:
    assert catalog.resolve(image, [], ["netexec"]).argv == agnhost("netexec")


@pytest.mark.parametrize(
    "image", ["registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.2", "gcr.io/google_containers/pause-amd64:3.1"]
)
def test_pause_images(catalog: ImageCatalog, image: str) -> None:
    resolved = catalog.resolve(image, [], [])
    assert resolved.argv == agnhost("pause")
    assert resolved.image_kind == "pause"
    assert catalog.resolve(image, [], ["-v"]).argv == agnhost("pause")  # pause ignores its arguments
    assert catalog.resolve(image, ["/bin/true"], []).argv == ("/bin/true",)


# ---------------------------------------------------------------- busybox, alpine, debian, ubuntu


BUSYBOX_LIKE = [
    "busybox",
    "busybox:1.36",
    "docker.io/library/busybox:1.36",
    "alpine:3.19",
    "registry.k8s.io/e2e-test-images/busybox:1.36.1-1",
    "busybox@sha256:" + "d" * 64,
]


@pytest.mark.parametrize("image", BUSYBOX_LIKE)
def test_busybox_like_images_default_to_sh(catalog: ImageCatalog, image: str) -> None:
    assert catalog.resolve(image, [], []) == ResolvedCommand(
        ("sh",), (("PATH", f"{BB}:{HOST_PATH}"),), "busybox"
    )


def test_busybox_command_and_args(catalog: ImageCatalog) -> None:
    assert catalog.resolve("busybox", ["sleep", "3600"], []).argv == ("sleep", "3600")
    assert catalog.resolve("busybox", [], ["-c", "echo hi"]).argv == ("-c", "echo hi")  # no ENTRYPOINT
    assert catalog.resolve("busybox", ["sh", "-c"], ["wget -qO- http://web"]).argv == (
        "sh",
        "-c",
        "wget -qO- http://web",
    )


def test_busybox_without_applet_dir_uses_host_binaries() -> None:
    resolved = ImageCatalog(python=PY, busybox_bin_dir=None, pythonpath=ROOT).resolve("busybox", [], [])
    assert resolved.env == (("PATH", HOST_PATH),)


@pytest.mark.parametrize(
    "image", ["debian", "debian:bookworm-slim", "ubuntu:24.04", "docker.io/library/ubuntu"]
)
def test_debian_and_ubuntu_run_bash_on_the_host_path(catalog: ImageCatalog, image: str) -> None:
    assert catalog.resolve(image, [], []) == ResolvedCommand(("bash",), (("PATH", HOST_PATH),), "host")
    assert catalog.resolve(image, ["apt-get"], ["--version"]).argv == ("apt-get", "--version")


def test_default_catalog_finds_this_kubelite() -> None:
    resolved = ImageCatalog(busybox_bin_dir=None).resolve(AGNHOST, [], [])
    root = dict(resolved.env)["PYTHONPATH"]
    assert (Path(root) / "kubelite" / "images" / "agnhost.py").is_file()


# ---------------------------------------------------------------- unknown images and empty commands


def test_unknown_image_cannot_be_pulled(catalog: ImageCatalog) -> None:
    with pytest.raises(ImageError) as info:
        catalog.resolve("nginx:1.25", [], [])
    message = info.value.message
    assert info.value.reason == "ErrImagePull"
    assert message.startswith(
        'kubelite cannot pull "nginx:1.25": it runs containers as processes on the host'
    )
    for name in ("agnhost", "pause", "busybox", "alpine", "debian", "ubuntu"):
        assert name in message
    assert "kubelite agent --image-config" in message


def test_unknown_image_message_lists_configured_rules() -> None:
    catalog = ImageCatalog(
        python=PY, busybox_bin_dir=None, extra=[ImageRule("redis", ("/usr/bin/redis-server",))]
    )
    with pytest.raises(ImageError, match='and the configured "redis"'):
        catalog.resolve("nginx", [], [])


def test_nothing_to_run_is_a_create_container_error() -> None:
    catalog = ImageCatalog(python=PY, busybox_bin_dir=None, extra=[ImageRule("scratchy")])
    with pytest.raises(ImageError) as info:
        catalog.resolve("scratchy", [], [])
    assert info.value.reason == "CreateContainerError"
    assert "Set command in the container spec" in info.value.message
    assert catalog.resolve("scratchy", ["/bin/true"], []).argv == ("/bin/true",)
    with pytest.raises(ImageError, match="no command specified"):
        catalog.resolve("busybox", [""], [])


def test_image_error_is_an_exception_with_reason_and_message() -> None:
    error = ImageError("ErrImagePull", "a sentence.")
    assert (error.reason, error.message, str(error)) == ("ErrImagePull", "a sentence.", "a sentence.")


# ---------------------------------------------------------------- configured rules


NGINX = ImageRule(
    "docker.io/library/nginx:*",
    entrypoint=("/usr/sbin/nginx", "-g", "daemon off;"),
    env=(("PATH", "/usr/sbin:/usr/bin"),),
)


@pytest.mark.parametrize(
    ("pattern", "image", "expected"),
    [
        ("docker.io/library/nginx:*", "nginx", True),
        ("docker.io/library/nginx:*", "nginx:1.25", True),
        ("docker.io/library/nginx:*", "docker.io/library/nginx:1.25", True),
        ("docker.io/library/nginx:*", "quay.io/library/nginx:1.25", False),
        ("docker.io/library/nginx", "nginx:1.25", True),  # the repository alone
        ("docker.io/library/nginx:1.2?", "nginx:1.25", True),
        ("docker.io/library/nginx:1.2?", "nginx:1.3", False),
        ("bitnami/nginx:*", "bitnami/nginx:1.25", True),  # Docker's short form
        ("nginx", "nginx", True),  # a bare name: any registry, any tag
        ("nginx", "ghcr.io/acme/nginx:stable", True),
        ("nginx", "nginx-extra", False),
        ("nginx:1.*", "nginx:1.25", True),
        ("nginx:1.*", "nginx:2.0", False),
        ("nginx@sha256:*", "nginx@sha256:" + "e" * 64, True),
        ("*/acme/*", "ghcr.io/acme/tool:1", True),
    ],
)
def test_rule_matching(pattern: str, image: str, expected: bool) -> None:
    assert ImageRule(pattern).matches(parse_reference(image)) is expected


def test_configured_rules_come_first_and_follow_entrypoint_rules() -> None:
    busybox_override = ImageRule("busybox", cmd=("/bin/true",))
    catalog = ImageCatalog(python=PY, busybox_bin_dir=BB, extra=[NGINX, busybox_override], pythonpath=ROOT)
    assert catalog.resolve("nginx:1.25", [], []) == ResolvedCommand(
        ("/usr/sbin/nginx", "-g", "daemon off;"), (("PATH", "/usr/sbin:/usr/bin"),), "configured"
    )
    assert catalog.resolve("nginx", [], ["-t"]).argv == ("/usr/sbin/nginx", "-g", "daemon off;", "-t")
    assert catalog.resolve("nginx", ["/bin/echo"], ["x"]).argv == ("/bin/echo", "x")
    assert catalog.resolve("busybox", [], []).argv == ("/bin/true",)
    assert catalog.resolve("busybox", [], []).image_kind == "configured"


def test_image_config_file(tmp_path: Path) -> None:
    path = tmp_path / "images.yaml"
    path.write_text(
        "images:\n"
        '- match: "docker.io/library/nginx:*"\n'
        '  entrypoint: ["/usr/sbin/nginx", "-g", "daemon off;"]\n'
        "  cmd: []\n"
        "  env: {PATH: /usr/sbin:/usr/bin, WORKERS: 4}\n"
        "- match: redis\n"
        "  cmd: [redis-server]\n"
    )
    rules = load_image_config(str(path))
    assert rules == [
        ImageRule(NGINX.match, NGINX.entrypoint, (), (("PATH", "/usr/sbin:/usr/bin"), ("WORKERS", "4"))),
        ImageRule("redis", (), ("redis-server",), ()),
    ]
    catalog = ImageCatalog.from_file(str(path), python=PY, busybox_bin_dir=None, pythonpath=ROOT)
    assert catalog.resolve("redis:7", [], []).argv == ("redis-server",)
    assert catalog.resolve("busybox", [], []).argv == ("sh",)  # the built-ins still apply


def test_empty_image_config_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_image_config(str(path)) == []
    assert parse_image_config({"images": None}) == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a mapping with one key, images"),
        ({"imagez": []}, "must be a mapping with one key, images"),
        ({"images": {"match": "x"}}, "images must be a list"),
        ({"images": ["nginx"]}, r"images\[0\] must be a mapping"),
        ({"images": [{"match": ""}]}, r"images\[0\].match must be a non-empty string"),
        ({"images": [{"match": "a", "command": ["x"]}]}, r"unknown field\(s\) command"),
        ({"images": [{"match": "a", "entrypoint": "/bin/x"}]}, "must be a list of strings, e.g."),
        ({"images": [{"match": "a", "cmd": [1]}]}, r"images\[0\].cmd must be a list of strings"),
        ({"images": [{"match": "a", "env": ["A=1"]}]}, "must be a mapping of variable names"),
        ({"images": [{"match": "a", "env": {"A": None}}]}, "A must be a string"),
        ({"images": [{"match": "a", "env": {"A": True}}]}, "A must be a string"),
        ({"images": [{"match": "a", "env": {"A=B": "1"}}]}, "invalid variable name"),
    ],
)
def test_image_config_errors(document: object, message: str) -> None:
    with pytest.raises(ImageConfigError, match=message):
        parse_image_config(document, source="cfg.yaml")


def test_image_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageConfigError, match=r"Cannot read the image config .*--image-config"):
        load_image_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: [\n")
    with pytest.raises(ImageConfigError, match="is not valid YAML"):
        load_image_config(str(bad))


# ---------------------------------------------------------------- package surface and busybox


def test_package_exports_lazily() -> None:
    assert images.ImageCatalog is ImageCatalog
    assert images.prepare_busybox_bin_dir is prepare_busybox_bin_dir
    for name in images.__all__:
        assert getattr(images, name) is not None
    with pytest.raises(AttributeError):
        _ = images.NoSuchThing  # type: ignore[attr-defined]


def test_prepare_busybox_bin_dir_is_idempotent(tmp_path: Path) -> None:
    busybox = find_busybox()
    if busybox is None:
        pytest.skip("busybox is not installed")
    directory = tmp_path / "bin"
    assert prepare_busybox_bin_dir(directory, busybox) == directory
    applets = set(busybox_applets(busybox))
    assert {"sh", "wget", "nc", "nslookup", "sleep"} <= applets
    assert {p.name for p in directory.iterdir()} == applets
    assert os.readlink(directory / "sh") == os.path.abspath(busybox)
    (directory / "sh").unlink()
    (directory / "wget").unlink()
    (directory / "wget").symlink_to("/elsewhere/busybox")  # a link to another busybox is replaced
    (directory / "gone").symlink_to(busybox)  # an applet this busybox lacks is removed
    (directory / "mine").write_text("left alone")
    prepare_busybox_bin_dir(directory, busybox)
    assert {p.name for p in directory.iterdir()} == applets | {"mine"}
    assert os.readlink(directory / "wget") == os.path.abspath(busybox)


def test_prepare_busybox_bin_dir_without_busybox(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"busybox was not found at .*install it"):
        prepare_busybox_bin_dir(tmp_path / "bin", str(tmp_path / "no-busybox"))
