"""Typed keys for everything the web app keeps on its Application."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis

from snippet_service.config import Config
from snippet_service.db import Database
from snippet_service.snippets import Intake
from snippet_service.web.cache import PageCache
from snippet_service.web.events import DoneListener, StreamSlots
from snippet_service.web.hits import HitCounter
from snippet_service.web.httpmetrics import HttpMetrics
from snippet_service.web.languages import Languages
from snippet_service.web.stylesheet import Stylesheet
from snippet_service.web.throttle import BytesInFlight, FailureWindow

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", ArqRedis)
HTTP = web.AppKey("http", aiohttp.ClientSession)
LANGUAGES = web.AppKey("languages", Languages)
STYLESHEET = web.AppKey("stylesheet", Stylesheet)
DONE = web.AppKey("done", DoneListener)
PAGES = web.AppKey("pages", PageCache)
INTAKE = web.AppKey("intake", Intake)
HITS = web.AppKey("hits", HitCounter)
BODIES = web.AppKey("bodies_in_flight", BytesInFlight)
AUTH_FAILURES = web.AppKey("auth_failures", FailureWindow)
STREAMS = web.AppKey("streams", StreamSlots)
METRICS = web.AppKey("metrics", HttpMetrics)
