#!/usr/bin/env python3
"""make_demo_city.py - writes deploy/config/grids.geojson, the demo city.

The demo city is Nanjing's Jianye district (建邺区, code 320105) drawn as a
lattice: six streets, 62 communities, and a few hundred small rectangular
grids, inside lat 31.98-32.05, lon 118.68-118.76. Street and community names
are real-sounding, not a survey: the shapes are rectangles, not real borders.

Codes follow the district's own hierarchy (deploy/config/README.md):
district 320105, street 320105SSS, community 320105SSSCCC, grid
320105SSSCCCGGG (3 digits per level, counted from 001).

Coordinates are computed in integer micro-degrees, so neighbours share
exactly the same edge values: no gaps, no slivers, no overlaps. Output is
deterministic (no randomness, stable ordering), one feature per line.

Usage: python3 tools/make_demo_city.py [OUTPUT]   (default: deploy/config/grids.geojson)
Python 3 standard library only.
"""

import json
import os
import sys

DISTRICT = ("320105", "建邺区")
# lon and lat bounds in micro-degrees
DISTRICT_BOX = (118_680_000, 31_980_000, 118_760_000, 32_050_000)

# (name, (lon_min, lat_min, lon_max, lat_max), community columns, rows, community names)
STREETS = [
    ("南苑街道", (118_730_000, 32_005_000, 118_760_000, 32_030_000), 3, 4,
     ["吉庆", "南湖", "蓓蕾", "茶南", "湖西", "南苑新村", "所街", "凤栖", "文体", "恒安", "嘉园", "兴达"]),
    ("兴隆街道", (118_700_000, 32_005_000, 118_730_000, 32_030_000), 3, 4,
     ["兴隆", "奥体", "金穗", "嘉业", "月安", "康福", "楠溪", "新河", "双和", "梦都", "庐山", "汇景"]),
    ("莫愁湖街道", (118_700_000, 32_030_000, 118_760_000, 32_050_000), 5, 2,
     ["莫愁", "湖滨", "水西门", "江东", "北圩", "清凉", "南湖东", "泰和", "仁恒", "石鼓"]),
    ("沙洲街道", (118_730_000, 31_980_000, 118_760_000, 32_005_000), 3, 3,
     ["沙洲", "滨湖", "新安", "友谊", "白鹭", "莲花", "新城", "碧瑶", "科技园"]),
    ("双闸街道", (118_700_000, 31_980_000, 118_730_000, 32_005_000), 3, 3,
     ["双闸", "江山", "怡康", "华新", "南圩", "福园", "绿博", "富春", "平良"]),
    ("江心洲街道", (118_680_000, 31_980_000, 118_700_000, 32_050_000), 2, 5,
     ["江心洲", "洲岛", "清江", "民主", "新城佳园", "青奥", "生态", "梅子洲", "上坝", "果园"]),
]

# Grid lattice (columns, rows) per community, cycled: communities differ in size.
GRID_SHAPES = [(4, 3), (3, 4), (4, 4), (3, 3), (4, 3), (4, 4)]


def split(box, columns, rows):
    """Cells of a box, row by row from the north-west corner, in micro-degrees."""
    lon_min, lat_min, lon_max, lat_max = box
    lons = [lon_min + (lon_max - lon_min) * i // columns for i in range(columns + 1)]
    lats = [lat_max - (lat_max - lat_min) * j // rows for j in range(rows + 1)]
    return [(lons[i], lats[j + 1], lons[i + 1], lats[j])
            for j in range(rows) for i in range(columns)]


def polygon(box):
    lon_min, lat_min, lon_max, lat_max = (v / 1_000_000 for v in box)
    ring = [[lon_min, lat_min], [lon_max, lat_min], [lon_max, lat_max],
            [lon_min, lat_max], [lon_min, lat_min]]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(code, name, level, parent, box):
    return {"type": "Feature",
            "properties": {"code": code, "name": name, "level": level, "parent": parent},
            "geometry": polygon(box)}


def build():
    features = [feature(DISTRICT[0], DISTRICT[1], "district", None, DISTRICT_BOX)]
    shape_turn = 0
    for s, (street_name, street_box, columns, rows, communities) in enumerate(STREETS, 1):
        street_code = "%s%03d" % (DISTRICT[0], s)
        features.append(feature(street_code, street_name, "street", DISTRICT[0], street_box))
        cells = split(street_box, columns, rows)
        assert len(cells) == len(communities), street_name
        for c, (community, community_box) in enumerate(zip(communities, cells), 1):
            community_code = "%s%03d" % (street_code, c)
            community_name = community + "社区"
            features.append(feature(community_code, community_name, "community",
                                    street_code, community_box))
            grid_columns, grid_rows = GRID_SHAPES[shape_turn % len(GRID_SHAPES)]
            shape_turn += 1
            for g, grid_box in enumerate(split(community_box, grid_columns, grid_rows), 1):
                features.append(feature("%s%03d" % (community_code, g),
                                        "%s第%d网格" % (community_name, g),
                                        "grid", community_code, grid_box))
    return features


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    output = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "deploy", "config", "grids.geojson")
    features = build()
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    with open(output, "w", encoding="utf-8") as out:
        out.write('{"type":"FeatureCollection",\n"name":"建邺区 demo grids (civicbus)",\n"features":[\n')
        out.write(",\n".join(lines))
        out.write("\n]}\n")
    counts = {}
    for f in features:
        counts[f["properties"]["level"]] = counts.get(f["properties"]["level"], 0) + 1
    print("wrote %s: %s" % (output, ", ".join("%d %s" % (n, level) for level, n in counts.items())))


if __name__ == "__main__":
    main()
