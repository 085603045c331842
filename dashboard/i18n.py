"""UI texts. zh-CN is the default; English with YITU_LANG=en. Keys are English identifiers."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "一图指挥",
        "subtitle": "综治中心 · 矛盾纠纷调处化解指挥平台",
        "status.loading": "正在连接…",
        "status.ok": "系统正常",
        "status.degraded": "服务异常",
        "map.empty": "尚未导入辖区网格",
    },
    "en": {
        "title": "One-Map Command",
        "subtitle": "Grid governance and dispute resolution command centre",
        "status.loading": "Connecting…",
        "status.ok": "All systems normal",
        "status.degraded": "Service degraded",
        "map.empty": "No territory imported yet",
    },
}


def translator(lang: str):
    table = TEXTS.get(lang, TEXTS["zh-CN"])
    fallback = TEXTS["zh-CN"]

    def t(key: str) -> str:
        return table.get(key) or fallback.get(key) or key

    return t
