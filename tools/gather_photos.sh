#!/bin/sh
# Gather the training photographs of the shipped weights into one folder (the model card's
# `photos/`), from the shared data and the package registries:
#   tools/gather_photos.sh SHARED_PHOTOS_DIR DEST_DIR
# - SHARED_PHOTOS_DIR: ../shared/data/photos (mate_*, plasma_*; GPL-2+)
# - scikit-image 0.26.0's wheel (PyPI): astronaut, chelsea, coffee, rocket (public domain / CC0)
# - Debian bookworm's lomiri-wallpapers-16.04 and -20.04 (20.04.0-2): 14 photographs
#   (CC-BY-4.0, CC-BY-SA-3.0/4.0, CC0-1.0; authors in the model card and the packages' copyright files)
# Names are prefixed by source; the synthetic dataset holds out every seventh file from the fourth
# in name order, so these names fix the held-out set (6 photographs) in an empty DEST_DIR;
# other files there would move the split.
# Needs pip and apt-get (network or a local mirror); run once, before training. camnet itself never downloads.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SHARED_PHOTOS_DIR DEST_DIR" >&2; exit 2; }
src=$1
dest=$2
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp "$src"/*.jpg "$dest"/

python3 -m pip download --quiet --no-deps --dest "$work" scikit-image==0.26.0
python3 - "$work" "$dest" <<'EOF'
import pathlib, sys, zipfile
work, dest = map(pathlib.Path, sys.argv[1:])
wheel = zipfile.ZipFile(next(work.glob("scikit_image-*.whl")))
for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
    (dest / f"skimage_{name}").write_bytes(wheel.read(f"skimage/data/{name}"))
EOF

(cd "$work" && apt-get download lomiri-wallpapers-16.04=20.04.0-2 lomiri-wallpapers-20.04=20.04.0-2 >/dev/null)
for deb in "$work"/lomiri-wallpapers-*.deb; do
    dpkg-deb -x "$deb" "$work/x"
done
for f in "$work"/x/usr/share/backgrounds/*.jpg; do
    name=$(basename "$f")
    case $name in
        # not photographs: a texture (analogpattern), renders (umang, Fossa, Infinite-Sea, Painting-Colors)
        analogpattern_* | umang_* | Fossa_* | Infinite-Sea_* | Painting-Colors_*) continue ;;
    esac
    cp "$f" "$dest/ubports_$name"
done
echo "$(ls "$dest" | wc -l) photographs in $dest"
