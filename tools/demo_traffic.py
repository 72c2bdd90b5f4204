#!/usr/bin/env python3
"""demo_traffic.py — posts realistic citizen tickets to the civicbus intake
at a gentle rate, so a newcomer who runs ./scripts/up watches tickets flow
through the whole loop (python3 standard library only).

Each ticket: a category and a request type the dispatch catalogue allows
(deploy/config/catalog.json: the intake refuses a request type a category
does not take), a Chinese description written for that category, a point
inside a random grid of the demo city (deploy/config/grids.geojson) with a
street address, a source the API key may post (a reporter_app key: app,
web, open311, grid_worker), and for some tickets a reporter (name and a
made-up mobile number). Every ticket carries its own Idempotency-Key, so a
retried POST never makes a second ticket. By default only categories of
police, urban, civil and general (the fallback: civil) are drawn, the
departments ./scripts/up runs an adapter and a simulator for; some of them
are co-handled with market, health or housing, whose orders wait.

One log line per ticket on stdout:
    2026-11-29 10:00:02 201 320105-20261129-000000064 app report urban.event.environment.exposed_garbage 320105001002003 小区门口垃圾堆了三天没人清运
Runs until Ctrl-C or SIGTERM (exits 0), or --count tickets, or --duration
seconds. The URL and key come from the options, else CIVICBUS_URL and
CIVICBUS_API_KEY in the environment, else .civicbus/dev.env (written by
./scripts/up).
"""
import argparse
import http.client
import json
import os
import random
import signal
import sys
import time
import uuid
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "deploy", "config")
ALL_TYPES = ["consult", "help", "complaint", "report", "suggestion"]
REPORTER_APP_SOURCES = ["app", "web", "open311", "grid_worker"]

# Descriptions by category (a few each); a category without its own gets
# one made from its Chinese name and request type.
TEXTS = {
    "urban.facility.public.manhole": ["人行道上井盖缺了一块，晚上很危险", "井盖松动，车压过去哐哐响",
                                      "路口雨水井盖下沉，已经有电动车摔倒"],
    "urban.facility.public.streetlight": ["小区外面路灯一到晚上就不亮", "路灯白天一直亮着，浪费电",
                                          "这一排路灯坏了好几盏，夜里走路看不清"],
    "urban.facility.public.hydrant": ["消防栓被撞歪了，还在漏水", "消防栓被杂物挡住了"],
    "urban.facility.traffic.sign": ["路口的限速牌被风吹倒了", "交通标志牌被树枝挡住看不到"],
    "urban.facility.traffic.railing": ["道路中间护栏被撞坏一段", "隔离护栏倒在机动车道上"],
    "urban.facility.traffic.bus_shelter": ["公交站亭玻璃碎了一地", "站亭顶棚漏雨，候车的人没处躲"],
    "urban.facility.environment.trash_bin": ["垃圾箱盖子坏了，气味很大", "路边果皮箱被人推倒了"],
    "urban.facility.environment.public_toilet": ["公厕洗手池的水龙头坏了", "公共厕所冲水坏了好几天"],
    "urban.facility.greening.tree": ["昨晚大风行道树倒了，压在人行道上", "行道树歪向马路，随时可能倒"],
    "urban.facility.greening.green_belt": ["绿化带被车碾坏了一大片", "有人在绿地里种菜"],
    "urban.facility.building.dangerous": ["老楼外墙有裂缝，还在掉渣", "沿街的老房子屋檐塌了一角"],
    "urban.facility.other.sculpture": ["广场上的雕塑被人涂鸦了", "公园雕塑底座松动"],
    "urban.event.environment.exposed_garbage": ["小区门口垃圾堆了三天没人清运", "路边有人倾倒装修垃圾",
                                                "菜场后面垃圾堆成小山，苍蝇很多"],
    "urban.event.environment.dirty_road": ["马路上全是泥浆，一下雨就没法走", "路面油污很多，容易打滑"],
    "urban.event.environment.laundry": ["沿街商铺在行道树上晾被子", "临街阳台晾衣服滴水到人行道"],
    "urban.event.advert.flyposting": ["电线杆上贴满了小广告", "楼道里被喷了办证小广告"],
    "urban.event.advert.illegal_billboard": ["商店门口私自立了一块大广告牌", "楼顶广告牌松动，怕掉下来"],
    "urban.event.construction.dust": ["工地没有覆盖，扬尘很大", "工地出口车辆没冲洗，满街都是灰"],
    "urban.event.construction.noise": ["工地晚上十一点还在施工，吵得睡不着", "凌晨有工地在打桩"],
    "urban.event.construction.spill": ["渣土车一路撒土", "搅拌车在路口撒了一大片混凝土"],
    "urban.event.emergency.road_collapse": ["路面突然塌了一个坑，有一米多宽", "人行道塌陷，已经有人差点掉进去"],
    "urban.event.emergency.water_main": ["路边水管爆了，水往外喷", "自来水管破裂，路面全是水"],
    "urban.event.emergency.drain_blocked": ["下水道堵了，污水漫到路上", "雨水口堵塞，路口积水很深"],
    "urban.event.street.stall": ["人行道被水果摊占了，行人只能走机动车道", "夜市摊点占道经营，垃圾满地"],
    "urban.event.street.hawker": ["地铁口有流动摊贩卖烤红薯", "学校门口游商很多"],
    "urban.event.street.parking_motor": ["小区门口汽车乱停，消防通道被堵", "人行道上停满了汽车"],
    "urban.event.street.parking_bike": ["共享单车堆满了地铁出口", "电动车乱停堵住了盲道"],
    "urban.event.other.illegal_construction": ["一楼住户在院子里违章搭建", "楼顶有人在加盖房子"],
    "police.public_order.noise_night": ["楼下烧烤店半夜还在喧哗", "隔壁每晚唱歌到两点"],
    "police.public_order.fight": ["小区门口有人打架", "饭店门口有几个人在斗殴"],
    "police.traffic.congestion": ["早高峰路口堵死了，信号灯好像坏了", "学校门口接送车辆堵成一团"],
    "police.fraud.telecom": ["接到自称公安的电话让我转账", "收到冒充客服的短信要验证码"],
    "police.household.registration": ["想咨询新生儿落户需要什么材料", "户口迁移一直办不下来"],
    "civil.assistance.subsistence": ["家里老人生病，想申请低保", "低保金这个月没有到账"],
    "civil.elderly.care": ["独居老人行动不便，需要上门照料", "想给父母申请社区助餐服务"],
    "civil.disability.subsidy": ["残疾人两项补贴怎么申请", "残疾人补贴今年还没发"],
    "civil.community.affairs": ["社区活动室一直锁着不开放", "小区居委会换届想了解流程"],
    "civil.marriage.registration": ["婚姻登记可以网上预约吗", "补办结婚证需要什么材料"],
    "civil.funeral.services": ["想了解节地生态安葬补贴", "殡仪馆收费不透明"],
    "market.food.safety": ["在小饭馆吃饭后拉肚子，后厨很脏", "超市在卖过期食品"],
    "market.price.gouging": ["停车场乱收费", "药店口罩价格翻了好几倍"],
    "market.consumer.dispute": ["健身房跑路了，预付卡退不了", "网购家电坏了商家不给修"],
    "market.license.unlicensed": ["小区里有无证经营的作坊", "路边有人无照开诊所"],
    "market.product.quality": ["买的电动车电池鼓包", "儿童玩具有刺鼻气味"],
    "health.medical.service": ["医院排队太久，挂号难", "诊所医生态度很差"],
    "health.epidemic.prevention": ["小区有多人发热，担心是传染病", "想咨询流感疫苗接种"],
    "health.vaccination": ["孩子疫苗接种预约不上", "想了解成人疫苗在哪里打"],
    "health.public_place.hygiene": ["游泳馆的水很浑", "理发店毛巾不消毒"],
    "housing.property.management": ["物业不管事，楼道灯坏了半年", "物业费涨价没有公示"],
    "housing.elevator.fault": ["电梯困人了！", "电梯经常停在两层中间"],
    "housing.old_community.renovation": ["老旧小区改造什么时候轮到我们", "改造后的外墙已经开裂"],
    "housing.rental.dispute": ["房东不退押金", "二房东违规群租"],
    "housing.construction.quality": ["新房交付后墙面大面积开裂", "楼上渗水到我家天花板"],
    "general.other": ["不知道找哪个部门，想反映一下小区的问题", "有个建议想提给政府"],
}
TYPE_WORDS = {"consult": "想咨询一下", "help": "请求帮助：", "complaint": "投诉：",
              "report": "反映：", "suggestion": "建议："}
STREETS = ["江东中路", "集庆门大街", "应天大街", "水西门大街", "庐山路", "嘉陵江东街", "梦都大街",
           "河西大街", "所街", "云锦路", "黄山路", "奥体大街", "兴隆大街", "恒山路", "白龙江东街",
           "江心洲街", "清河路", "南湖路"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
         "明", "超", "秀英", "桂英", "建国", "志强", "海燕"]
URGENT_PREFIXES = ("urban.event.emergency.", "police.public_order.fight", "housing.elevator.")


def log(text, stream=sys.stdout):
    stream.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
    stream.flush()


def read_dev_env(path):
    """The `export NAME=value` lines of .civicbus/dev.env (shell-quoted by %q)."""
    import shlex
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("export "):
                    line = line[len("export "):]
                name, sep, value = line.partition("=")
                if sep:
                    words = shlex.split(value) if value else [""]
                    out[name] = words[0] if words else ""
    except OSError:
        pass
    return out


def point_in_ring(lon, lat, ring):
    inside, j = False, len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


class City:
    """The demo city's grids and the catalogue's categories."""

    def __init__(self, config_dir, prefixes=()):
        with open(os.path.join(config_dir, "grids.geojson"), encoding="utf-8") as f:
            geo = json.load(f)
        with open(os.path.join(config_dir, "catalog.json"), encoding="utf-8") as f:
            catalog = json.load(f)
        self.grids = []         # (code, polygons: list of rings lists)
        for feature in geo["features"]:
            p, g = feature["properties"], feature.get("geometry")
            if p.get("level") != "grid" or not g:
                continue
            polygons = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
            self.grids.append((p["code"], polygons))
        if not self.grids:
            raise ValueError("grids.geojson has no grid")
        self.categories = [(c["code"], c.get("request_types") or ALL_TYPES)
                           for c in catalog["categories"]
                           if not prefixes or c["code"].startswith(tuple(prefixes))]
        if not self.categories:
            raise ValueError("no catalogue category matches --categories")

    def point(self, rng):
        """(grid code, lat, lon): a random point inside a random grid (the
        outer ring, not in a hole; rejection sampling in its bounding box)."""
        while True:
            code, polygons = rng.choice(self.grids)
            rings = rng.choice(polygons)
            outer = rings[0]
            lons = [c[0] for c in outer]
            lats = [c[1] for c in outer]
            for _ in range(50):
                lon = rng.uniform(min(lons), max(lons))
                lat = rng.uniform(min(lats), max(lats))
                if point_in_ring(lon, lat, outer) and \
                        not any(point_in_ring(lon, lat, hole) for hole in rings[1:]):
                    return code, round(lat, 6), round(lon, 6)


class Generator:
    def __init__(self, args, city):
        self.args = args
        self.city = city
        self.rng = random.Random(args.seed)
        url = urlsplit(args.url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"--url must be http://host:port, not {args.url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.base = url.path.rstrip("/")
        self.counts = {}

    def ticket(self):
        code, types = self.rng.choice(self.city.categories)
        request_type = self.rng.choice(types)
        source = self.rng.choice(self.args.sources)
        grid, lat, lon = self.city.point(self.rng)
        texts = TEXTS.get(code) or [TYPE_WORDS[request_type] + code.rsplit(".", 1)[-1]]
        description = self.rng.choice(texts)
        body = {"source": source, "request_type": request_type, "category": code,
                "description": description,
                "location": {"lat": lat, "lon": lon,
                             "address": "南京市建邺区%s%d号附近" % (self.rng.choice(STREETS),
                                                                 self.rng.randint(1, 399))}}
        if source == "grid_worker":
            body["location"]["grid_code"] = grid
        if code.startswith(URGENT_PREFIXES) and self.rng.random() < 0.5:
            body["urgency"] = "urgent"
        if self.rng.random() < self.args.reporter_rate:
            body["reporter"] = {
                "name": self.rng.choice(SURNAMES) + self.rng.choice(GIVEN),
                "phone": "1%d%d%08d" % (self.rng.choice([3, 5, 7, 8, 9]), self.rng.randint(0, 9),
                                         self.rng.randint(0, 99999999))}
        if self.rng.random() < 0.2:
            body["attachments"] = ["https://demo.civicbus.example/photos/%s.jpg" % uuid.uuid4().hex]
        return body, grid

    def post(self, body):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("POST", self.base + "/v1/tickets", body=data, headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer " + self.args.key,
                "Idempotency-Key": "demo-" + uuid.uuid4().hex})
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        try:
            return r.status, json.loads(raw.decode("utf-8"))
        except ValueError:
            return r.status, {}

    def one(self):
        body, grid = self.ticket()
        try:
            status, reply = self.post(body)
        except OSError as e:
            log(f"--- intake not answering at {self.args.url}: {e}", sys.stderr)
            return False
        self.counts[status] = self.counts.get(status, 0) + 1
        if status in (200, 201):
            log(f"{status} {reply.get('id', '?')} {body['source']} {body['request_type']} "
                f"{body['category']} {body['location'].get('grid_code', grid)} {body['description']}")
        else:
            error = reply.get("error", {})
            log(f"{status} refused {body['source']} {body['request_type']} {body['category']}: "
                f"{error.get('code', '')} {error.get('field', '')} {error.get('message', '')}",
                sys.stderr)
            if status in (401, 403):
                return False
        return True


class Stop(Exception):
    pass


def _on_signal(signum, frame):
    raise Stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="the intake's base URL (default: CIVICBUS_URL, "
                                 ".civicbus/dev.env, http://127.0.0.1:8080)")
    p.add_argument("--key", help="API key (default: CIVICBUS_API_KEY or .civicbus/dev.env)")
    p.add_argument("--rate", type=float, default=0.5, help="tickets per second (default 0.5)")
    p.add_argument("--count", type=int, default=0, help="stop after this many tickets (0: never)")
    p.add_argument("--duration", type=float, default=0,
                   help="stop after this many seconds (0: never)")
    p.add_argument("--sources", default=",".join(REPORTER_APP_SOURCES),
                   help="comma list of sources to post as (default: every source a "
                        "reporter_app key may post: %(default)s)")
    p.add_argument("--categories", default="police.,urban.,civil.,general.",
                   help="comma list of category prefixes to draw from (default: %(default)s, "
                        "the departments ./scripts/up runs an adapter and a simulator for; "
                        "'' for every category: tickets for market, health and housing then "
                        "wait DISPATCHED, as nobody takes their orders)")
    p.add_argument("--reporter-rate", type=float, default=0.4,
                   help="share of tickets with a reporter (default 0.4)")
    p.add_argument("--config", default=CONFIG, help="directory of grids.geojson and catalog.json")
    p.add_argument("--dev-env", default=os.path.join(ROOT, ".civicbus", "dev.env"),
                   help="where ./scripts/up writes the URL and demo key")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = p.parse_args(argv)
    dev = read_dev_env(args.dev_env)
    args.url = args.url or os.environ.get("CIVICBUS_URL") or dev.get("CIVICBUS_URL") \
        or "http://127.0.0.1:8080"
    args.key = args.key or os.environ.get("CIVICBUS_API_KEY") or dev.get("CIVICBUS_API_KEY")
    if not args.key:
        p.error("no API key: give --key, set CIVICBUS_API_KEY, or run ./scripts/up first")
    if args.rate <= 0 or args.rate > 1000:
        p.error("--rate must be above 0 and at most 1000")
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    known = {"hotline", "grid_worker", "app", "web", "sensor", "open311"}
    if not args.sources or not set(args.sources) <= known:
        p.error(f"--sources must name some of {', '.join(sorted(known))}")
    try:
        city = City(args.config, [c.strip() for c in args.categories.split(",") if c.strip()])
        gen = Generator(args, city)
    except (OSError, ValueError, KeyError) as e:
        p.error(str(e))

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    # One JSON line first, as the services log "ready" (scripts/up waits for it).
    sys.stderr.write(json.dumps({"msg": "ready", "service": "demo_traffic", "url": args.url,
                                 "rate": args.rate, "sources": args.sources,
                                 "categories": len(city.categories)},
                                separators=(",", ":")) + "\n")
    log(f"demo traffic: {args.rate:g} ticket(s)/s to {args.url} as "
        f"{', '.join(args.sources)}; Ctrl-C stops", sys.stderr)
    started = time.monotonic()
    sent = 0
    next_at = started
    backoff = 1.0
    try:
        while (not args.count or sent < args.count) and \
                (not args.duration or time.monotonic() - started < args.duration):
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if gen.one():
                sent += 1
                backoff = 1.0
                next_at = max(next_at + 1.0 / args.rate, time.monotonic() - 1.0)
            else:
                # The intake is not there (yet) or refuses the key: wait longer.
                next_at = time.monotonic() + backoff
                backoff = min(backoff * 2, 30.0)
    except Stop:
        pass
    summary = ", ".join(f"{status}: {n}" for status, n in sorted(gen.counts.items()))
    log(f"demo traffic: stopped after {sent} ticket(s) ({summary or 'none answered'})",
        sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
