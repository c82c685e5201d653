"""Sphinx extension: drop repeated <script> entries from each page.

sphinx-thebe 0.3.1 registers its configuration script once per `env-before-read-docs` event, which
Jupyter Book fires more than once, so every page declared `const THEBE_JS_URL` twice and the browser
raised "Identifier 'THEBE_JS_URL' has already been declared". Keeping the first copy of each script
fixes it without touching the installed packages.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # the same inline script comes back with filename None or "": compare content only
        key = (str(getattr(script, "filename", script) or ""),
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
