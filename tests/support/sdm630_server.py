#!/usr/bin/env python3
"""An Eastron SDM630 on Modbus TCP, served by pymodbus, for tests.

Serves the meter's float32 input registers (high word first, as the
SDM630 sends them) on 127.0.0.1 at a free port, prints `port <N>` on one
line of stdout once it listens, and serves until stdin closes (the test
that started it exited) or it is killed.

Readings: 230.5 / 231.0 / 229.0 V, 400.5 W on L1, 1234.5 W in total,
50.0 Hz, 5678.25 kWh imported, 12.75 kWh exported.

Written for pymodbus 3.16 (SimData/SimDevice); `.ci/run` pins it.
"""

import asyncio
import struct
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

READINGS = {
    0x0000: 230.5,  # voltage_l1
    0x0002: 231.0,  # voltage_l2
    0x0004: 229.0,  # voltage_l3
    0x000C: 400.5,  # power_l1
    0x0034: 1234.5,  # power_total
    0x0046: 50.0,  # frequency
    0x0048: 5678.25,  # import_energy
    0x004A: 12.75,  # export_energy
}
REGISTERS = 0x0158  # up to and including total_energy at 0x0156


def input_registers():
    words = [0] * REGISTERS
    for address, value in READINGS.items():
        high, low = struct.unpack(">HH", struct.pack(">f", value))
        words[address] = high
        words[address + 1] = low
    return words


async def main():
    registers = SimData(0, values=input_registers(), datatype=DataType.REGISTERS)
    unused = SimData(0, values=0, datatype=DataType.REGISTERS)
    bits = SimData(0, values=False, datatype=DataType.BITS)
    # Distinct blocks: (coils, discrete inputs, holding, input registers).
    device = SimDevice(id=0, simdata=([bits], [bits], [unused], [registers]))
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    # Serve until the test closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
