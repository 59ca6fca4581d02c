#!/usr/bin/env bash
# System tools the report needs: a LaTeX engine (xelatex or lualatex), pandoc (fallback renderer),
# pdftotext (tests) and the font of Hebrew names (DejaVu Sans, report/preamble.tex). Installs them
# with apt on Debian as root; otherwise names what is missing.
set -euo pipefail
need=()
command -v xelatex >/dev/null || command -v lualatex >/dev/null || need+=(latex)
command -v pandoc >/dev/null || command -v quarto >/dev/null || need+=(pandoc)
command -v pdftotext >/dev/null || need+=(pdftotext)
{ command -v fc-list >/dev/null && [ -n "$(fc-list "DejaVu Sans")" ]; } || need+=("DejaVu Sans")
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${need[*]} with apt-get (about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq texlive-xetex texlive-latex-recommended \
    texlive-latex-extra texlive-fonts-recommended texlive-plain-generic lmodern \
    pandoc poppler-utils fontconfig fonts-dejavu-core >/dev/null
  exit 0
fi
hint="apt-get install texlive-xetex texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended texlive-plain-generic lmodern pandoc poppler-utils fontconfig fonts-dejavu-core"
command -v quarto >/dev/null && hint="quarto install tinytex (and poppler-utils for the tests, fonts-dejavu-core for Hebrew names)"
echo "setup: missing ${need[*]}; install it as root: $hint" >&2
exit 1
