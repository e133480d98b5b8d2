// keepstone ui: the page scripts (no inline scripts: the CSP forbids them).
"use strict";
