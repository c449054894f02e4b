"""Typed keys for everything the web app keeps on its Application."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis

from snippet_service.cache import PageCache
from snippet_service.config import Config
from snippet_service.db import Database
from snippet_service.events import DoneListener, StreamSlots
from snippet_service.hits import HitCounter
from snippet_service.intake import Intake
from snippet_service.languages import Languages
from snippet_service.throttle import BytesInFlight, FailureWindow

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", ArqRedis)
HTTP = web.AppKey("http", aiohttp.ClientSession)
LANGUAGES = web.AppKey("languages", Languages)
DONE = web.AppKey("done", DoneListener)
PAGES = web.AppKey("pages", PageCache)
INTAKE = web.AppKey("intake", Intake)
HITS = web.AppKey("hits", HitCounter)
BODIES = web.AppKey("bodies_in_flight", BytesInFlight)
AUTH_FAILURES = web.AppKey("auth_failures", FailureWindow)
STREAMS = web.AppKey("streams", StreamSlots)
