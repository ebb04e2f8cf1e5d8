# Installs Debian packages that are missing, once, with apt-get. Sourced by setup.sh and test.sh.
# Idempotent: installed packages are skipped and `apt-get update` runs only when something is
# missing. Works as root, or through sudo when it is available.

ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "missing packages: ${missing[*]}; run as root or install them" >&2
            return 1
        fi
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# libclang for pg_query's bindings: the version the brief names where it exists, else the
# distribution's default.
libclang_packages() {
    if apt-cache show libclang1-14 >/dev/null 2>&1; then
        echo "libclang1-14 libclang-common-14-dev"
    else
        echo "libclang-dev"
    fi
}
